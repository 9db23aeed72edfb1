import Foundation
import OpenQ
import Testing

@testable import OpenQSQLite

@Suite("Payload codecs")
struct PayloadCodecTests {
    struct Order: Codable, Sendable, Equatable {
        var id: Int
        var item: String
    }

    @Test func json_roundTrips_andIsReadable() throws {
        let order = Order(id: 7, item: "book")
        let codec = JSONPayloadCodec<Order>()
        #expect(try codec.decode(codec.encode(order)) == order)
        #expect(String(decoding: try codec.encode(order), as: UTF8.self).contains("\"item\":\"book\""))
    }

    @Test func bytesAreStoredAsTheyAre() throws {
        let bytes: [UInt8] = [0, 1, 2, 255]
        #expect(try BytesPayloadCodec().encode(bytes) == bytes)
        #expect(try DataPayloadCodec().encode(Data(bytes)) == bytes)
        #expect(try DataPayloadCodec().decode(bytes) == Data(bytes))
    }
}
