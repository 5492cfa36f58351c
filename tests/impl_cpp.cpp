// The implementation compiled as C++11 (no exceptions, no RTTI); the C test
// suite links against this object to prove the C++ build behaves the same.
#define SSMBRIDGE_IMPLEMENTATION
#include "../ssmbridge.h"
