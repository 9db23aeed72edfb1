// Demo scenario: an event bus, fan-out to every subscription.

import OpenQ

struct OrderEvent: Sendable {
    var number: Int
    var amount: Int
}

struct PaymentEvent: Sendable {
    var order: Int
    var cents: Int
}

/// Counts stock per order: a `MessageHandler` run by a `Consumer`.
struct InventoryHandler: MessageHandler {
    let handled: Collected<[Int]>

    func handle(_ message: Message<OrderEvent>) async throws {
        handled.withValue { $0.append(message.payload.number) }
    }
}

enum EventBusScenario {
    static func run(_ options: DemoOptions, narrator: Narrator) async throws -> ScenarioOutcome {
        let count = max(options.messages, 10)
        let queue = narrator.makeQueue()
        let orders = try await queue.createTopic("orders", of: OrderEvent.self)
        let payments = try await queue.createTopic("payments", of: PaymentEvent.self)
        narrator.say("topics 'orders' and 'payments'; a producer 'shop' publishes \(count) orders with headers")

        let inventoryHandled = Collected<[Int]>([])
        let inventory = try await orders.consume(
            subscription: "inventory", with: InventoryHandler(handled: inventoryHandled))
        narrator.say("InventoryHandler (a MessageHandler) consumes 'orders' through subscription 'inventory'")

        let dashboard = try await orders.subscribe()
        let dashboardSeen = Collected<[Int]>([])
        let dashboardTask = Task {
            for await message in dashboard { dashboardSeen.withValue { $0.append(message.payload.number) } }
        }
        let paymentStream = try await payments.subscribe()
        let paymentsSeen = Collected<Int>(0)
        let ledgerTask = Task {
            for await message in paymentStream where message.headers["currency"] == "EUR" {
                paymentsSeen.withValue { $0 += 1 }
            }
        }
        narrator.say("a dashboard and a ledger read with for-await loops")

        let shop = try orders.producer("shop", headers: ["channel": "web"])
        let half = count / 2
        var lateReader: Task<[Int], Never>?
        for number in 1...count {
            try await shop.publish(OrderEvent(number: number, amount: number % 90 + 10))
            try await payments.publish(PaymentEvent(order: number, cents: number * 100), headers: ["currency": "EUR"])
            if number == half {
                try await waitUntil("the dashboard to catch up", seconds: options.patience) {
                    dashboardSeen.current.count == half
                }
                dashboardTask.cancel()
                // The late dashboard reads from the moment it subscribes: a subscription nobody
                // reads fills up, and under the default `.suspend` policy parks the publisher.
                let late = try await orders.subscribe()
                let remaining = count - half
                lateReader = Task {
                    var seen: [Int] = []
                    for await message in late {
                        seen.append(message.payload.number)
                        if seen.count == remaining { break }
                    }
                    return seen
                }
                narrator.say("after order \(half): the dashboard unsubscribes and a new dashboard subscribes")
            }
        }
        let reader = lateReader!
        let lateSeen = try await withThrowingTaskGroup(of: [Int].self) { group in
            group.addTask { await reader.value }
            group.addTask { [patience = options.patience] in
                try await Task.sleep(for: .seconds(patience))
                throw ScenarioTimeout(what: "the late dashboard to see the orders published after it joined")
            }
            defer {
                group.cancelAll()
                reader.cancel()
            }
            return try await group.next()!
        }
        try await waitUntil("inventory and ledger to finish", seconds: options.patience) {
            inventoryHandled.current.count == count && paymentsSeen.current == count
        }
        await inventory.stop()
        ledgerTask.cancel()
        _ = await dashboardTask.value
        narrator.say(
            "inventory handled \(inventoryHandled.current.count), the ledger saw \(paymentsSeen.current) payments")

        var outcome = ScenarioOutcome(.eventBus, statistics: await queue.statistics())
        outcome.check("the handler got every order once", inventoryHandled.current.sorted() == Array(1...count))
        outcome.check("the first dashboard saw orders 1...\(half) in order", dashboardSeen.current == Array(1...half))
        outcome.check(
            "the late dashboard saw exactly the orders published after it joined", lateSeen == Array(half + 1...count))
        outcome.check("the ledger saw every payment", paymentsSeen.current == count)
        outcome.checkAccounting()
        _ = await queue.shutdown(gracePeriod: .seconds(1))
        return outcome
    }
}
