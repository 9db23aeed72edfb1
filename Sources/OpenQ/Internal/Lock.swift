#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A value guarded by a `pthread_mutex_t`, stored in one allocation with the value.
///
/// OpenQ guards every topic's state with this type rather than `Synchronization.Mutex`: on Linux
/// `Mutex` is built on raw futexes that ThreadSanitizer cannot see, which turns a correctly locked
/// state machine into false race reports (see STYLE.md). The shape follows swift-nio's
/// `NIOLockedValueBox`.
package struct LockedValueBox<Value>: @unchecked Sendable {
    private let storage: LockStorage<Value>

    package init(_ value: Value) {
        self.storage = LockStorage.create(value: value)
    }

    /// Runs `body` with exclusive access to the value. Never call user code, resume a continuation,
    /// log or emit metrics inside `body`.
    @inline(__always)
    package func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        try storage.withLockedValue(body)
    }
}

private final class LockStorage<Value>: ManagedBuffer<Value, pthread_mutex_t> {
    static func create(value: Value) -> LockStorage<Value> {
        let buffer = Self.create(minimumCapacity: 1) { _ in value }
        let storage = unsafeDowncast(buffer, to: LockStorage<Value>.self)
        storage.withUnsafeMutablePointerToElements { mutex in
            var attributes = pthread_mutexattr_t()
            pthread_mutexattr_init(&attributes)
            #if DEBUG
                pthread_mutexattr_settype(&attributes, Int32(PTHREAD_MUTEX_ERRORCHECK))
            #elseif canImport(Glibc)
                pthread_mutexattr_settype(&attributes, Int32(PTHREAD_MUTEX_ADAPTIVE_NP))
            #endif
            let error = pthread_mutex_init(mutex, &attributes)
            precondition(error == 0, "pthread_mutex_init failed: \(error)")
            pthread_mutexattr_destroy(&attributes)
        }
        return storage
    }

    @inline(__always)
    func withLockedValue<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        try withUnsafeMutablePointers { value, mutex in
            let lockError = pthread_mutex_lock(mutex)
            precondition(lockError == 0, "pthread_mutex_lock failed: \(lockError)")
            defer {
                let unlockError = pthread_mutex_unlock(mutex)
                precondition(unlockError == 0, "pthread_mutex_unlock failed: \(unlockError)")
            }
            return try body(&value.pointee)
        }
    }

    deinit {
        // The header (the value) is destroyed by ManagedBuffer itself; the mutex is an element.
        withUnsafeMutablePointerToElements { mutex in
            _ = pthread_mutex_destroy(mutex)
        }
    }
}
