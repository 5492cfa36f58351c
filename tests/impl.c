/* The one translation unit of the test suite that holds the implementation
   (default configuration); every test_*.c includes the declarations only. */
#define SSMBRIDGE_IMPLEMENTATION
#include "../ssmbridge.h"
