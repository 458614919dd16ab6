import KithCRDT
import Testing

/// Phone keys through libphonenumber (data-model.md §9): the cases the issue found wrong with the
/// hand-written normalizer, each pinned.
@Suite("Phone normalization")
struct PhoneNormalizationTests {
    let gb = PhoneRegion(code: "GB")!
    let us = PhoneRegion(code: "US")!

    @Test func internationalWithTrunkZeroInParentheses() {
        // The old normalizer kept the (0): +4402079460018.
        #expect(Normalization.phone("+44 (0)20 7946 0018") == "+442079460018")
        #expect(Normalization.phone("+44 (0)20 7946 0018", region: us) == "+442079460018")
    }

    @Test func usInternationalPrefix() {
        #expect(Normalization.phone("011 44 20 7946 0018", region: us) == "+442079460018")
        #expect(Normalization.phone("00 44 20 7946 0018", region: gb) == "+442079460018")
    }

    @Test func extensionsAreKeptApart() {
        let p = Normalization.parsePhone("(415) 555-0132 ext. 12", region: us)
        #expect(p?.e164 == "+14155550132")
        #expect(p?.extension == "12")
        #expect(p?.key == "+14155550132;ext=12")
        #expect(Normalization.phone("tel:+1-415-555-0132;ext=12") == "+14155550132;ext=12")
        #expect(Normalization.phone("+1 415 555 0132 x12") == "+14155550132;ext=12")
    }

    @Test func italianLeadingZeroIsPartOfTheNumber() {
        #expect(Normalization.phone("02 1234 5678", region: PhoneRegion(code: "IT")) == "+390212345678")
        // Whereas a French trunk 0 is dropped.
        #expect(Normalization.phone("06 12 34 56 78", region: PhoneRegion(code: "fr")) == "+33612345678")
    }

    @Test func vanityLetters() {
        #expect(Normalization.phone("1-800-FLOWERS", region: us) == "+18003569377")
    }

    @Test func sameNumberAnyFormatSameKey() {
        let forms = ["020 7946 0018", "+44 20 7946 0018", "+44 (0)20 7946 0018", "0044 20 7946 0018", "(020) 7946-0018", "+442079460018"]
        #expect(Set(forms.map { Normalization.phone($0, region: gb) }) == ["+442079460018"])
        #expect(Normalization.parsePhone("020 7946 0018", region: gb)?.nationalNumber == "2079460018")
    }

    @Test func whatLibphonenumberCannotPlaceKeepsItsDigits() {
        // A national number without a region, and a number too short to be one.
        #expect(Normalization.phone("020 7946 0018") == "02079460018")
        #expect(Normalization.phone("867-5309") == "8675309")
        #expect(Normalization.phone("call me") == nil)
    }

    @Test func regions() {
        #expect(PhoneRegion(code: "gb")?.code == "GB")
        #expect(PhoneRegion(code: "XX") == nil)
        #expect(PhoneRegion(code: "GBR") == nil)
        #expect(PhoneRegion(code: "") == nil)
        #expect(PhoneRegion(callingCode: "44")?.code == "GB")
        #expect(PhoneRegion(callingCode: "+1")?.code == "US")
        #expect(PhoneRegion(callingCode: "33")?.code == "FR")
        #expect(PhoneRegion(callingCode: "999") == nil)
    }
}
