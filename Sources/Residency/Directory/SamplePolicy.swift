import Foundation

/// The policy of `samples/residency-policy.json`, built in for `pdb cluster init` (a test keeps
/// the two the same): the EU and EEA countries, Switzerland and the United Kingdom in `eu`;
/// North America and the US territories in `us`; South, East and South-East Asia and Oceania in
/// `ap`; `us` for every other country.
extension CountryRegionPolicy {
    public static let sampleJSON = #"""
        {
          "version": 1,
          "default": "us",
          "regions": {
            "eu": [
              "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT",
              "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
              "AX", "GF", "GP", "MQ", "RE", "YT", "MF",
              "IS", "LI", "NO", "CH", "GB"
            ],
            "us": ["US", "CA", "MX", "PR", "VI", "GU", "AS", "MP", "UM"],
            "ap": [
              "AU", "NZ", "JP", "KR", "SG", "HK", "TW", "ID", "MY", "TH", "PH", "VN", "IN", "BD", "LK",
              "PK", "NP", "KH", "LA", "MM", "BN", "MN", "FJ", "PG"
            ]
          }
        }
        """#

    /// `sampleJSON` as a policy.
    public static var sample: CountryRegionPolicy {
        // The built-in text is valid (a test reads it); a failure here is a build's mistake.
        try! parse(try! JSONSerialization.jsonObject(with: Data(sampleJSON.utf8)), file: "(built-in sample)")
    }
}
