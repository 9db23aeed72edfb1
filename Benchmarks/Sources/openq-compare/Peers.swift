// openq-compare: the peers (AsyncStream, NIO's producer, AsyncChannel, hand-rolled queues).

import DequeModule
import NIOCore
import Synchronization

/// The payload of every scenario: an Int and a short String.
struct Payload: Sendable {
    var number: Int
    var label: String

    init(_ number: Int) {
        self.number = number
        self.label = "order"
    }
}

/// The ceiling for this design: a `Mutex` around a `Deque` and one consumer continuation; the
/// consumer takes everything buffered per wake-up.
final class HandRolledQueue<Element: Sendable>: Sendable {
    private struct State {
        var buffer: Deque<Element> = []
        var waiter: CheckedContinuation<Deque<Element>?, Never>?
        var finished = false
    }

    private let state = Mutex(State())

    func send(_ element: Element) {
        let waiter = state.withLock { state -> (CheckedContinuation<Deque<Element>?, Never>, Deque<Element>)? in
            state.buffer.append(element)
            guard let waiter = state.waiter else { return nil }
            state.waiter = nil
            defer { state.buffer = [] }
            return (waiter, state.buffer)
        }
        if let (continuation, batch) = waiter { continuation.resume(returning: batch) }
    }

    func send(contentsOf elements: some Sequence<Element>) {
        let waiter = state.withLock { state -> (CheckedContinuation<Deque<Element>?, Never>, Deque<Element>)? in
            state.buffer.append(contentsOf: elements)
            guard let waiter = state.waiter else { return nil }
            state.waiter = nil
            defer { state.buffer = [] }
            return (waiter, state.buffer)
        }
        if let (continuation, batch) = waiter { continuation.resume(returning: batch) }
    }

    func finish() {
        let waiter = state.withLock { state in
            state.finished = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: nil)
    }

    /// Everything buffered, waiting for it when there is nothing; nil once finished and empty.
    private enum Fast {
        case batch(Deque<Element>)
        case finished
        case wait
    }

    func nextBatch() async -> Deque<Element>? {
        let fast = state.withLock { state -> Fast in
            if !state.buffer.isEmpty {
                defer { state.buffer = [] }
                return .batch(state.buffer)
            }
            return state.finished ? .finished : .wait
        }
        switch fast {
        case .batch(let batch): return batch
        case .finished: return nil
        case .wait:
            return await withCheckedContinuation { continuation in
                let immediate = state.withLock { state -> Deque<Element>?? in
                    if !state.buffer.isEmpty {
                        defer { state.buffer = [] }
                        return .some(state.buffer)
                    }
                    if state.finished { return .some(nil) }
                    state.waiter = continuation
                    return .none
                }
                if let immediate { continuation.resume(returning: immediate) }
            }
        }
    }
}

/// Lets a `NIOAsyncSequenceProducer` producer wait for demand after `yield` said
/// `stopProducing`. A `produceMore` that arrives before the producer waits is remembered, so no
/// wake-up is lost.
final class ProducerGate: NIOAsyncSequenceProducerDelegate, Sendable {
    private let state = Mutex<(pending: Bool, waiter: CheckedContinuation<Void, Never>?)>((false, nil))

    func produceMore() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let waiter = state.waiter else {
                state.pending = true
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }

    func didTerminate() { produceMore() }

    func waitForDemand() async {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> Bool in
                if state.pending {
                    state.pending = false
                    return true
                }
                state.waiter = continuation
                return false
            }
            if ready { continuation.resume() }
        }
    }
}
