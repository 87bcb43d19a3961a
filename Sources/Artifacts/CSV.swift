// RFC 4180 CSV: fields with commas, quotes or line breaks are quoted, quotes doubled.

/// Writes rows as CSV text with `\n` line ends.
public func csvText(header: [String], rows: [[String]]) -> String {
    func field(_ value: String) -> String {
        guard value.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return value }
        return "\"" + value.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
    var out = header.map(field).joined(separator: ",") + "\n"
    for row in rows { out += row.map(field).joined(separator: ",") + "\n" }
    return out
}

/// Parses CSV text into rows of fields (the header is the first row). A trailing line end is
/// optional; `\r\n` line ends are accepted.
///
/// - Throws: `CSVError` with the 1-based line of an unterminated quote.
public func parseCSV(_ text: String) throws(CSVError) -> [[String]] {
    var rows: [[String]] = []
    var row: [String] = []
    var field = ""
    var quoted = false
    var line = 1
    var quoteLine = 1
    var iterator = text.unicodeScalars.makeIterator()
    var pending: Unicode.Scalar? = nil
    func next() -> Unicode.Scalar? {
        if let p = pending { pending = nil; return p }
        return iterator.next()
    }
    while let c = next() {
        if quoted {
            if c == "\"" {
                if let after = next() {
                    if after == "\"" { field.unicodeScalars.append("\"") } else { quoted = false; pending = after }
                } else { quoted = false }
            } else {
                if c == "\n" { line += 1 }
                field.unicodeScalars.append(c)
            }
            continue
        }
        switch c {
        case "\"": quoted = true; quoteLine = line
        case ",": row.append(field); field = ""
        case "\r": break
        case "\n":
            row.append(field); field = ""
            rows.append(row); row = []
            line += 1
        default: field.unicodeScalars.append(c)
        }
    }
    if quoted { throw CSVError(line: quoteLine, message: "a quoted field is never closed") }
    if !field.isEmpty || !row.isEmpty {
        row.append(field)
        rows.append(row)
    }
    return rows
}

/// A malformed CSV file.
public struct CSVError: Error, Equatable {
    public let line: Int
    public let message: String
}
