/* SSMBRIDGE_STATIC with the implementation in the same TU: every function is
   static, so the object must export no symbol at all (checked with nm). */
#define SSMBRIDGE_STATIC
#define SSMBRIDGE_IMPLEMENTATION
#include "../ssmbridge.h"
