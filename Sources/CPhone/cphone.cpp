// The C ABI over Google's libphonenumber that Kith's Swift code calls (include/cphone.h).
#include "cphone.h"

#include <cstring>
#include <string>

#include <phonenumbers/phonenumber.pb.h>
#include <phonenumbers/phonenumberutil.h>

using i18n::phonenumbers::PhoneNumber;
using i18n::phonenumbers::PhoneNumberUtil;

namespace {

bool copy_out(const std::string &s, char *out, size_t size) {
    if (out == nullptr || s.size() + 1 > size) return false;
    std::memcpy(out, s.data(), s.size());
    out[s.size()] = '\0';
    return true;
}

PhoneNumberUtil *util() {
    // A thread-safe singleton (libphonenumber documents GetInstance as such).
    return PhoneNumberUtil::GetInstance();
}

}  // namespace

namespace {

// The North American number in its commonest shapes, read without libphonenumber: Debian's build
// runs ICU regular expressions in Parse (~12 µs a number, most of an import's conversion), and
// these shapes need none of them. Only digits and the punctuation ` ( ) - .` (libphonenumber's
// VALID_PUNCTUATION, stripped by its digit normalization), with either a `+` first and then
// exactly `1` and ten digits, or, in region US or CA, exactly ten digits; the ten begin 2–9 (no
// national prefix 1 to strip, no IDD 011, no Italian leading zero). For these libphonenumber
// finds country code 1, the ten digits as the national significant number, no extension, and
// a possible number (NANPA: 10 digits): the result is the same by construction, and a test
// compares both over a large generated set (Tests/KithInterchangeTests/PhoneFastPathTests).
// Anything else returns false and goes through libphonenumber.
bool nanp_fast(const char *input, const char *region, std::string *e164, std::string *nsn) {
    const char *p = input;
    while (*p == ' ') ++p;
    const bool plus = *p == '+';
    if (plus) ++p;
    char digits[12];
    int n = 0;
    for (; *p != '\0'; ++p) {
        const char c = *p;
        if (c >= '0' && c <= '9') {
            if (n == 11) return false;
            digits[n++] = c;
        } else if (c != ' ' && c != '(' && c != ')' && c != '-' && c != '.') {
            return false;
        }
    }
    const char *ten;
    if (plus) {
        if (n != 11 || digits[0] != '1') return false;
        ten = digits + 1;
    } else {
        if (n != 10 || region == nullptr || !((region[0] == 'U' && region[1] == 'S' && region[2] == '\0') ||
                                              (region[0] == 'C' && region[1] == 'A' && region[2] == '\0'))) {
            return false;
        }
        ten = digits;
    }
    if (ten[0] < '2') return false;
    nsn->assign(ten, 10);
    e164->assign("+1");
    e164->append(ten, 10);
    return true;
}

int normalize(const char *input, const char *region, bool fast, char *e164, size_t e164_size, char *extension,
              size_t extension_size, char *national, size_t national_size) {
    if (input == nullptr) return CPHONE_UNPARSEABLE;
    if (fast) {
        std::string formatted, nsn;
        if (nanp_fast(input, region, &formatted, &nsn)) {
            if (!copy_out(formatted, e164, e164_size) || !copy_out("", extension, extension_size) ||
                !copy_out(nsn, national, national_size)) {
                return CPHONE_BUFFER;
            }
            return CPHONE_POSSIBLE;
        }
    }
    PhoneNumber number;
    const std::string reg = (region == nullptr || region[0] == '\0') ? std::string("ZZ") : std::string(region);
    if (util()->Parse(std::string(input), reg, &number) != PhoneNumberUtil::NO_PARSING_ERROR) return CPHONE_UNPARSEABLE;
    if (!util()->IsPossibleNumber(number)) return CPHONE_UNPARSEABLE;
    std::string formatted;
    util()->Format(number, PhoneNumberUtil::E164, &formatted);
    std::string nsn;
    util()->GetNationalSignificantNumber(number, &nsn);
    if (!copy_out(formatted, e164, e164_size) || !copy_out(number.extension(), extension, extension_size) ||
        !copy_out(nsn, national, national_size)) {
        return CPHONE_BUFFER;
    }
    // IsValidNumber would tell a valid number from a merely possible one, at more than twice the
    // cost of everything else here (34 of 56 µs a number): keys need only the possible form.
    return CPHONE_POSSIBLE;
}

}  // namespace

extern "C" int cphone_normalize(const char *input, const char *region, char *e164, size_t e164_size, char *extension,
                                size_t extension_size, char *national, size_t national_size) {
    return normalize(input, region, true, e164, e164_size, extension, extension_size, national, national_size);
}

extern "C" int cphone_normalize_libphonenumber(const char *input, const char *region, char *e164, size_t e164_size,
                                               char *extension, size_t extension_size, char *national,
                                               size_t national_size) {
    return normalize(input, region, false, e164, e164_size, extension, extension_size, national, national_size);
}

extern "C" int cphone_is_supported_region(const char *region) {
    if (region == nullptr) return 0;
    return util()->GetCountryCodeForRegion(std::string(region)) != 0 ? 1 : 0;
}

extern "C" int cphone_region_for_calling_code(int calling_code, char *region, size_t region_size) {
    std::string r;
    util()->GetRegionCodeForCountryCode(calling_code, &r);
    if (r == "ZZ" || r.empty()) {
        copy_out("", region, region_size);
        return 0;
    }
    return copy_out(r, region, region_size) ? 1 : 0;
}
