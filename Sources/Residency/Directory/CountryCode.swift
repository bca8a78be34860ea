import PartitionDB

/// Where a person is, as sign-up and the router see it: an ISO 3166-1 alpha-2 country code
/// (`DE`), or an ISO 3166-2 subdivision of one (`US-CA`: the country, `-`, 1 to 3 letters or
/// digits). Written in upper case; parsing accepts either case. The country must be one of the
/// 249 officially assigned codes; a subdivision is checked for its form only.
public struct CountryCode: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// `DE` or `US-CA`.
    public let code: String

    /// `text` as a country or subdivision code, or nil when it is neither.
    public init?(_ text: String) {
        let upper = text.uppercased()
        let parts = upper.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard let country = parts.first, Self.assigned.contains(String(country)) else { return nil }
        if parts.count == 2 {
            let subdivision = parts[1].utf8
            guard (1...3).contains(subdivision.count),
                subdivision.allSatisfy({ ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x30 && $0 <= 0x39) })
            else { return nil }
        }
        code = upper
    }

    /// The country of a subdivision (`US` for `US-CA`); the code itself for a country.
    public var country: CountryCode {
        guard let dash = code.firstIndex(of: "-") else { return self }
        return CountryCode(unchecked: String(code[..<dash]))
    }

    public var isSubdivision: Bool { code.contains("-") }

    private init(unchecked code: String) { self.code = code }

    public var description: String { code }
    public static func < (a: CountryCode, b: CountryCode) -> Bool { a.code < b.code }

    /// ISO 3166-1's officially assigned alpha-2 codes (249; the ISO 3166 Maintenance Agency's
    /// list, without the exceptionally or transitionally reserved ones such as `UK` or `EU`).
    static let assigned: Set<String> = Set(
        """
        AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR \
        BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ \
        EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW \
        GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY \
        KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV \
        MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY \
        QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG \
        TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM \
        ZW
        """.split(separator: " ").map(String.init))
}
