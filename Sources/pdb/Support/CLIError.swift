import Foundation
import PartitionDB
import Residency

#if canImport(Auth)
    import Auth
#endif

/// A failure found by the command line itself rather than by the engine.
struct CLIError: Error, CustomStringConvertible {
    /// A short stable code, as in `PartitionDBError.code`.
    var code: String
    var message: String

    var description: String { message }

    static func notFound(_ message: String) -> CLIError { CLIError(code: "not_found", message: message) }
}

/// The machine code and the message of any error a command can meet.
func describe(_ error: any Error) -> (code: String, message: String) {
    switch error {
    case let error as PartitionDBError: return (error.code, error.description)
    case let error as ResidencyError: return (error.code, error.description)
    #if canImport(Auth)
        case let error as AuthError: return (error.code, error.description)
    #endif
    case let error as CLIError: return (error.code, error.message)
    default: return ("internal", String(describing: error))
    }
}
