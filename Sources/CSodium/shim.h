#ifndef KITH_CSODIUM_SHIM_H
#define KITH_CSODIUM_SHIM_H
#include <sodium.h>
#endif
