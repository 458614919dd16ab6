#ifndef KITH_CPHONE_H
#define KITH_CPHONE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// What cphone_normalize found.
/// A possible number (the right length for its region): `e164` holds its E.164 form. (Whether
/// it is also a *valid*, allocated number is not checked: that costs more than the rest.)
#define CPHONE_POSSIBLE 1
/// Not a phone number libphonenumber can place (no country, too short, too long…).
#define CPHONE_UNPARSEABLE 2
/// An output buffer is too small.
#define CPHONE_BUFFER 3

/// Parses `input` (UTF-8, as the person typed it) with libphonenumber, national numbers read in
/// `region` (ISO 3166-1 alpha-2, e.g. "GB"; NULL or "" for none). On CPHONE_POSSIBLE writes the E.164 form ("+442079460018") to `e164` and the extension's digits
/// ("" when none) to `extension`, both NUL-terminated, and the national significant number's
/// digits to `national`. Returns CPHONE_POSSIBLE, or why not. Thread-safe. North American
/// numbers in their common shapes (`+1 415 555 0132`, `(415) 555-0132` in US or CA) are read
/// without libphonenumber's regular expressions, to the same result.
int cphone_normalize(const char *input, const char *region,
                     char *e164, size_t e164_size,
                     char *extension, size_t extension_size,
                     char *national, size_t national_size);

/// cphone_normalize without its fast path for North American numbers: every input through
/// libphonenumber's Parse. The same results (tests compare the two); for tests and checks.
int cphone_normalize_libphonenumber(const char *input, const char *region,
                                    char *e164, size_t e164_size,
                                    char *extension, size_t extension_size,
                                    char *national, size_t national_size);

/// 1 when `region` is a region libphonenumber knows ("GB", "US", …), else 0.
int cphone_is_supported_region(const char *region);

/// The main region of a calling code ("44" → "GB", "1" → "US"); writes "" and returns 0 when the
/// code is unknown.
int cphone_region_for_calling_code(int calling_code, char *region, size_t region_size);

#ifdef __cplusplus
}
#endif

#endif
