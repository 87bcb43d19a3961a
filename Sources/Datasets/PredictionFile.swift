// The prediction file every classifier and ensemble writes and `evaluate` reads:
//
//     image,label,p_bacterial,p_normal,p_viral
//     person1_bacteria_1.jpeg,bacterial,0.91,0.05,0.04
//
// label is a class name or index (0 bacterial, 1 normal, 2 viral); each row's probabilities must
// sum to 1 within 1e-4. Errors name the file, the row (1-based, the header is row 1) and the column.

import Artifacts
import Foundation
import Imaging
import Metrics

/// A malformed prediction file.
public enum PredictionFileError: Error, CustomStringConvertible, Equatable {
    case unreadable(path: String, message: String)
    case missingColumn(path: String, column: String)
    case badValue(path: String, row: Int, column: String, message: String)
    case empty(path: String)

    public var description: String {
        switch self {
        case let .unreadable(path, message): "\(path): \(message)"
        case let .missingColumn(path, column):
            "\(path): missing column '\(column)' (expected \(predictionColumns.joined(separator: ",")))"
        case let .badValue(path, row, column, message): "\(path): row \(row), column '\(column)': \(message)"
        case let .empty(path): "\(path): no prediction rows"
        }
    }
}

/// The columns of a prediction file, in the order they are written.
public let predictionColumns = ["image", "label", "p_bacterial", "p_normal", "p_viral"]

/// Reads a prediction file.
///
/// - Parameter renormalize: divide rows whose sum is off by more than 1e-4 by their sum instead of
///   failing; the number of such rows is returned.
/// - Throws: `PredictionFileError` naming the row and column.
public func readPredictions(path: String, renormalize: Bool = false) throws(PredictionFileError)
    -> (predictions: Predictions, renormalized: Int)
{
    let bytes: [UInt8]
    do { bytes = try readFile(path) } catch { throw .unreadable(path: path, message: error.description) }
    let table: [[String]]
    // A UTF-8 byte-order mark (spreadsheet exports write one) is not part of the first column's name.
    let text = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? Array(bytes.dropFirst(3)) : bytes
    do { table = try parseCSV(String(decoding: text, as: UTF8.self)) } catch {
        throw .badValue(path: path, row: error.line, column: "-", message: error.message)
    }
    guard let header = table.first else { throw .empty(path: path) }
    var position: [Int] = []
    for column in predictionColumns {
        guard let i = header.firstIndex(of: column) else { throw .missingColumn(path: path, column: column) }
        position.append(i)
    }
    var ids: [String] = [], labels: [Int] = [], probabilities: [Double] = []
    var seen: Set<String> = []
    var renormalized = 0
    for (offset, fields) in table.dropFirst().enumerated() {
        let row = offset + 2
        if fields.count == 1 && fields[0].isEmpty { continue }  // blank line
        guard fields.count == header.count else {
            throw .badValue(path: path, row: row, column: "-", message: "\(fields.count) fields, the header has \(header.count)")
        }
        let id = fields[position[0]]
        guard !id.isEmpty else { throw .badValue(path: path, row: row, column: "image", message: "empty image name") }
        guard seen.insert(id).inserted else { throw .badValue(path: path, row: row, column: "image", message: "'\(id)' appears twice") }
        let labelText = fields[position[1]]
        guard let label = CXRClass(name: String(blankStripped(labelText))) else {
            throw .badValue(path: path, row: row, column: "label",
                            message: "'\(labelText)' is not a class (bacterial, normal, viral or 0, 1, 2)")
        }
        var values: [Double] = []
        for (column, at) in zip(predictionColumns.suffix(3), position.suffix(3)) {
            let text = blankStripped(fields[at])
            guard let value = Double(text) else {
                throw .badValue(path: path, row: row, column: column, message: "'\(text)' is not a number")
            }
            guard value.isFinite, value >= 0, value <= 1 else {
                throw .badValue(path: path, row: row, column: column, message: "\(text) is not a probability in [0, 1]")
            }
            values.append(value)
        }
        let sum = values.reduce(0, +)
        if abs(sum - 1) > 1e-4 {
            guard renormalize, sum > 0 else {
                throw .badValue(path: path, row: row, column: "p_bacterial..p_viral",
                                message: "probabilities sum to \(sum), not 1 (±1e-4); --renormalize divides by the sum")
            }
            values = values.map { $0 / sum }
            renormalized += 1
        }
        ids.append(id)
        labels.append(label.rawValue)
        probabilities += values
    }
    guard !ids.isEmpty else { throw .empty(path: path) }
    return (Predictions(ids: ids, labels: labels, probabilities: probabilities, classes: 3), renormalized)
}

/// The CSV text of `predictions` (shortest round-trip decimal for each probability).
public func predictionCSV(_ predictions: Predictions) -> String {
    var out: [UInt8] = []
    out.reserveCapacity(64 * (predictions.count + 1))
    appendCSVRow(predictionColumns, to: &out)
    let names = CXRClass.allCases.map { Array($0.name.utf8) }
    for i in 0..<predictions.count {
        appendCSVField(predictions.ids[i], to: &out)
        out.append(UInt8(ascii: ","))
        out.append(contentsOf: names[predictions.labels[i]])
        for k in 0..<3 {
            out.append(UInt8(ascii: ","))
            out.append(contentsOf: predictions.p(i, k).description.utf8)
        }
        out.append(UInt8(ascii: "\n"))
    }
    return String(decoding: out, as: UTF8.self)
}

/// `text` without leading and trailing spaces and tabs (Foundation's trimming costs more than the
/// rest of reading a million-row file).
func blankStripped(_ text: String) -> Substring {
    let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
    guard let start = text.firstIndex(where: { !blank($0) }), let end = text.lastIndex(where: { !blank($0) }) else { return "" }
    return text[start...end]
}
