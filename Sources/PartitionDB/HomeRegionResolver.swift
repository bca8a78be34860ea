/// Answers "what is this subject's home region?" for the engine's write path. The Residency
/// module implements it with the global residency directory.
public protocol HomeRegionResolver: Sendable {
    /// The subject's home region, or nil when the subject has none.
    func homeRegion(of subject: SubjectID) throws -> Region?
}
