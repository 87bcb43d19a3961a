// RFC 4180 CSV: fields with commas, quotes or line breaks are quoted, quotes doubled.

/// Writes rows as CSV text with `\n` line ends.
public func csvText(header: [String], rows: [[String]]) -> String {
    var out: [UInt8] = []
    appendCSVRow(header, to: &out)
    for row in rows { appendCSVRow(row, to: &out) }
    return String(decoding: out, as: UTF8.self)
}

/// Appends one CSV row and its `\n` to `out`, as UTF-8 (a million-row file is written in well
/// under a second: bytes, not string concatenation).
public func appendCSVRow(_ fields: [String], to out: inout [UInt8]) {
    for (i, value) in fields.enumerated() {
        if i > 0 { out.append(UInt8(ascii: ",")) }
        appendCSVField(value, to: &out)
    }
    out.append(UInt8(ascii: "\n"))
}

/// Appends one field, quoted (quotes doubled) when it holds a comma, quote or line break.
public func appendCSVField(_ value: String, to out: inout [UInt8]) {
    let special: (UInt8) -> Bool = { $0 == UInt8(ascii: ",") || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "\r") }
    guard value.utf8.contains(where: special) else {
        out.append(contentsOf: value.utf8)
        return
    }
    out.append(UInt8(ascii: "\""))
    for byte in value.utf8 {
        out.append(byte)
        if byte == UInt8(ascii: "\"") { out.append(byte) }
    }
    out.append(UInt8(ascii: "\""))
}

/// Parses CSV text into rows of fields (the header is the first row). A trailing line end is
/// optional; `\r\n` line ends are accepted (a `\r` outside quotes is dropped). A quote opens a
/// quoted part anywhere in a field; inside it, two quotes are one.
///
/// - Throws: `CSVError` with the 1-based line of an unterminated quote.
public func parseCSV(_ text: String) throws(CSVError) -> [[String]] {
    var text = text
    // Bytes, not characters: every special character is ASCII, so a multi-byte UTF-8 sequence
    // passes through whole, and the text is valid UTF-8 (a String).
    let parsed: Result<[[String]], CSVError> = text.withUTF8 { bytes in
        var rows: [[String]] = []
        var row: [String] = []
        var field: [UInt8] = []
        var quoted = false
        var line = 1
        var quoteLine = 1
        var i = 0
        let quote = UInt8(ascii: "\""), comma = UInt8(ascii: ","), newline = UInt8(ascii: "\n"), ret = UInt8(ascii: "\r")
        func endField() {
            row.append(String(decoding: field, as: UTF8.self))
            field.removeAll(keepingCapacity: true)
        }
        while i < bytes.count {
            let c = bytes[i]
            i += 1
            if quoted {
                if c == quote {
                    if i < bytes.count && bytes[i] == quote {
                        field.append(quote)
                        i += 1
                    } else {
                        quoted = false
                    }
                } else {
                    if c == newline { line += 1 }
                    field.append(c)
                }
                continue
            }
            switch c {
            case quote: quoted = true; quoteLine = line
            case comma: endField()
            case ret: break
            case newline:
                endField()
                rows.append(row)
                row = []
                line += 1
            default: field.append(c)
            }
        }
        if quoted { return .failure(CSVError(line: quoteLine, message: "a quoted field is never closed")) }
        if !field.isEmpty || !row.isEmpty {
            endField()
            rows.append(row)
        }
        return .success(rows)
    }
    return try parsed.get()
}

/// A malformed CSV file.
public struct CSVError: Error, Equatable {
    public let line: Int
    public let message: String
}
