import KithCRDT
import Testing

@Test func dataModelVersionIsOne() {
    #expect(DataModel.version == 1)
}
