@testable import OpenQDemoKit

/// What the scenario tests run each scenario with: small counts, a short visibility timeout for
/// the work queue's crashed job, a fixed seed.
let smallOptions = DemoOptions(messages: 60, consumers: 2, visibilityTimeout: .milliseconds(50), seed: 1)

/// A narrator that prints nothing: the tests check outcomes, not text.
let quietNarrator = Narrator(quiet: true)
