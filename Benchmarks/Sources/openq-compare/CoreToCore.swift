// openq-compare: the core-to-core probe that tells the VM's fast mode from its slow one.

import Foundation
import Synchronization

/// How long a cache line takes to go from one core to another and back on this machine right now:
/// two threads bounce a counter through one atomic, and a round trip is one pass each way.
///
/// Why the runner measures it: on the 2-core VMs the benchmarks run on, this figure is not
/// constant. Mostly it is about 100 ns; for minutes at a time it is about 400 ns (no CPU time is
/// stolen meanwhile: the two virtual CPUs seem to sit farther apart), and every scenario in which
/// threads share a queue slows down with it. OpenQ's 1→1 per message suffers most, 4.5 M -> 1.25 M
/// msgs/s, because each message crosses cores several times (its record, allocated on the
/// producer's core and freed on the consumer's; the topic's lock and queue; the publish counter a
/// consumer watches), while `NIOAsyncSequenceProducer` stays at about 3.2 M. A table is read with
/// the figure beside it.
enum CoreToCore {
    /// The median of a few bursts of round trips between a thread on CPU 0 and one on CPU 1, in
    /// nanoseconds; `nil` on a single CPU. Both threads are pinned, so that the figure is the
    /// cores' distance and not the scheduler's placement of two spinning threads.
    static func roundTripNanoseconds(trips: Int = 20_000, bursts: Int = 5) -> Double? {
        guard ProcessInfo.processInfo.activeProcessorCount > 1 else { return nil }
        var samples: [Double] = []
        for _ in 0..<bursts { samples.append(burst(trips: trips)) }
        return samples.sorted()[samples.count / 2]
    }

    private static func burst(trips: Int) -> Double {
        let court = Court()
        // The partner answers every odd value with the next even one.
        let partner = Thread {
            pinCurrentThread(to: 1)
            court.partnerReady.store(true, ordering: .releasing)
            var expected = 1
            while expected < 2 * trips {
                if court.ball.load(ordering: .acquiring) == expected {
                    court.ball.store(expected + 1, ordering: .releasing)
                    expected += 2
                }
            }
        }
        let server = Thread {
            pinCurrentThread(to: 0)
            while !court.partnerReady.load(ordering: .acquiring) {}
            let start = ContinuousClock.now
            for trip in 0..<trips {
                court.ball.store(2 * trip + 1, ordering: .releasing)
                while court.ball.load(ordering: .acquiring) != 2 * trip + 2 {}
            }
            let (seconds, attoseconds) = (ContinuousClock.now - start).components
            court.nanoseconds.store(
                Int((Double(seconds) * 1e9 + Double(attoseconds) / 1e9) / Double(trips)), ordering: .releasing)
        }
        partner.start()
        server.start()
        while court.nanoseconds.load(ordering: .acquiring) < 0 { usleep(1_000) }
        return Double(court.nanoseconds.load(ordering: .acquiring))
    }

    /// Glibc's `sched_setaffinity`, looked up at run time: Swift's Glibc module leaves the GNU
    /// scheduling calls out.
    private typealias SetAffinity = @convention(c) (pid_t, Int, UnsafeRawPointer) -> Int32
    private static let setAffinity: SetAffinity? = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "sched_setaffinity")
        .map { unsafeBitCast($0, to: SetAffinity.self) }

    private static func pinCurrentThread(to cpu: Int) {
        var set = cpu_set_t()
        withUnsafeMutableBytes(of: &set) { bytes in
            bytes[cpu / 8] |= UInt8(1 << (cpu % 8))
        }
        _ = withUnsafeBytes(of: &set) { bytes in setAffinity?(0, bytes.count, bytes.baseAddress!) }
    }

    /// The atomics both threads touch; a class, so that the threads' closures can share them.
    private final class Court: Sendable {
        let ball = Atomic<Int>(0)
        let partnerReady = Atomic<Bool>(false)
        let nanoseconds = Atomic<Int>(-1)
    }
}
