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

extern "C" int cphone_normalize(const char *input, const char *region, char *e164, size_t e164_size, char *extension,
                                size_t extension_size, char *national, size_t national_size) {
    if (input == nullptr) return CPHONE_UNPARSEABLE;
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
