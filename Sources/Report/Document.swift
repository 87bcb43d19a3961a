// A report as a list of blocks, rendered twice: Markdown (figures as files beside it) and one
// self-contained HTML page (SVG inline, PNG as data URIs, no external resource of any kind).

import Foundation

/// One piece of a report.
public enum Block: Sendable {
    case heading(level: Int, text: String)
    case paragraph(String)
    case bullets([String])
    case table(header: [String], rows: [[String]])
    /// A figure: `file` is its path beside report.md; `svg` or `png` its content.
    case figure(file: String, caption: String, svg: String?, png: [UInt8]?)
}

/// A titled list of blocks.
public struct Document: Sendable {
    public var title: String
    public var blocks: [Block]

    public init(title: String, blocks: [Block] = []) {
        self.title = title
        self.blocks = blocks
    }

    /// GitHub-flavoured Markdown; figures are image links to their files.
    public func markdown() -> String {
        var out = "# \(title)\n"
        for block in blocks {
            out += "\n"
            switch block {
            case let .heading(level, text): out += String(repeating: "#", count: level) + " \(text)\n"
            case let .paragraph(text): out += text + "\n"
            case let .bullets(items): out += items.map { "- \($0)\n" }.joined()
            case let .table(header, rows):
                out += "| " + header.map(markdownCell).joined(separator: " | ") + " |\n"
                out += "|" + header.map { _ in "---|" }.joined() + "\n"
                out += rows.map { "| " + $0.map(markdownCell).joined(separator: " | ") + " |\n" }.joined()
            case let .figure(file, caption, _, _): out += "![\(caption)](\(file))\n\n*\(caption)*\n"
            }
        }
        return out
    }

    /// One HTML page that needs nothing else: inline CSS, inline SVG, base64 PNG.
    public func html() -> String {
        var out = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>\(escapeHTML(title))</title>
            <style>
            body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222;line-height:1.4}
            table{border-collapse:collapse;margin:1em 0;font-size:13px}
            th,td{border:1px solid #bbb;padding:3px 6px;text-align:left;vertical-align:top}
            th{background:#eee} tr:nth-child(even) td{background:#fafafa}
            figure{display:inline-block;margin:0.5em;vertical-align:top;max-width:560px}
            figure svg,figure img{max-width:100%;height:auto} figcaption{font-size:12px;color:#555}
            .held{color:#176117;font-weight:bold} .not-held{color:#a31515;font-weight:bold}
            </style></head><body>
            <h1>\(escapeHTML(title))</h1>

            """
        for block in blocks {
            switch block {
            case let .heading(level, text): out += "<h\(level + 1)>\(inlineHTML(text))</h\(level + 1)>\n"
            case let .paragraph(text): out += "<p>\(inlineHTML(text))</p>\n"
            case let .bullets(items): out += "<ul>\n" + items.map { "<li>\(inlineHTML($0))</li>\n" }.joined() + "</ul>\n"
            case let .table(header, rows):
                out += "<table><thead><tr>" + header.map { "<th>\(inlineHTML($0))</th>" }.joined() + "</tr></thead><tbody>\n"
                out += rows.map { "<tr>" + $0.map { "<td>\(cellHTML($0))</td>" }.joined() + "</tr>\n" }.joined()
                out += "</tbody></table>\n"
            case let .figure(_, caption, svg, png):
                out += "<figure>"
                if let svg { out += inlineSVG(svg) }
                if let png { out += "<img alt=\"\(escapeHTML(caption))\" src=\"data:image/png;base64,\(Data(png).base64EncodedString())\">" }
                out += "<figcaption>\(inlineHTML(caption))</figcaption></figure>\n"
            }
        }
        return out + "</body></html>\n"
    }
}

/// A Markdown table cell: pipes escaped, line breaks as spaces.
private func markdownCell(_ text: String) -> String {
    text.replacingOccurrences(of: "|", with: "\\|").replacingOccurrences(of: "\n", with: " ")
}

/// &, <, >, " escaped.
public func escapeHTML(_ text: String) -> String {
    var out = ""
    for c in text {
        switch c {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        default: out.append(c)
        }
    }
    return out
}

/// Escaped text with Markdown's **bold** and `code` spans as HTML.
func inlineHTML(_ text: String) -> String {
    var out = escapeHTML(text)
    for (marker, tag) in [("**", "strong"), ("`", "code")] {
        var parts = out.components(separatedBy: marker)
        guard parts.count >= 3 else { continue }
        var joined = parts.removeFirst()
        for (i, part) in parts.enumerated() {
            let closing = i % 2 == 1
            // An unpaired last marker stays as it was.
            if !closing && i == parts.count - 1 { joined += marker + part; continue }
            joined += (closing ? "</\(tag)>" : "<\(tag)>") + part
        }
        out = joined
    }
    return out
}

/// A table cell: "held" and "not held" verdicts are coloured.
private func cellHTML(_ text: String) -> String {
    switch text {
    case "held": "<span class=\"held\">held</span>"
    case "not held": "<span class=\"not-held\">not held</span>"
    default: inlineHTML(text)
    }
}

/// An SVG document as an inline element: the XML declaration dropped.
private func inlineSVG(_ svg: String) -> String {
    guard svg.hasPrefix("<?xml"), let end = svg.range(of: "?>") else { return svg }
    return String(svg[end.upperBound...])
}
