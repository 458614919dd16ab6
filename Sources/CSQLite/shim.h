#ifndef KITH_CSQLITE_SHIM_H
#define KITH_CSQLITE_SHIM_H
#include <sqlite3.h>
#endif
