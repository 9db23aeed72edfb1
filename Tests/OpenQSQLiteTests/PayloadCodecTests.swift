import Foundation
import Testing

@testable import OpenQSQLite

@Suite("Payload codecs and the quarantine")
struct PayloadCodecTests {
    struct OrderV1: Codable, Sendable, Equatable {
        var id: Int
        var item: String
    }

    struct OrderV2: Codable, Sendable, Equatable {
        var id: Int
        var quantity: Int  // renamed field: old payloads no longer decode
    }

    @Test func json_roundTrips_andBytesAreStoredAsTheyAre() throws {
        let order = OrderV1(id: 7, item: "book")
        let codec = defaultCodec(for: OrderV1.self)
        #expect(try codec.decode(codec.encode(order)) == order)
        #expect(String(decoding: try codec.encode(order), as: UTF8.self).contains("\"item\":\"book\""))
        let bytes: [UInt8] = [0, 1, 2, 255]
        #expect(try defaultCodec(for: [UInt8].self).encode(bytes) == Data(bytes))
        #expect(try defaultCodec(for: Data.self).encode(Data(bytes)) == Data(bytes))
    }

    @Test func aPayloadThatNoLongerDecodes_goesToTheQuarantineWithItsBytesAndReason() async throws {
        try await withTemporaryDirectory { directory in
            let store = try SQLiteStore(path: directory + "/openq.sqlite")
            defer { try? store.close() }
            let stored = try defaultCodec(for: OrderV1.self).encode(OrderV1(id: 1, item: "pen"))
            let error = #expect(throws: DecodingError.self) { try defaultCodec(for: OrderV2.self).decode(stored) }
            try await store.quarantine(
                topic: "orders", sequence: 42, payload: [UInt8](stored), reason: "\(String(describing: error))")
            let quarantined = try store.quarantined()
            #expect(quarantined.count == 1)
            #expect(quarantined.first?.topic == "orders" && quarantined.first?.sequence == 42)
            #expect(quarantined.first?.payload == [UInt8](stored))
            #expect(quarantined.first?.reason.contains("quantity") == true)
        }
    }
}
