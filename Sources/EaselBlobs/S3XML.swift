import Foundation

#if canImport(FoundationXML)
import FoundationXML
#endif

/// Just enough of a document tree to read S3's small XML answers (errors, listings, uploads).
struct S3XMLElement: Sendable, Equatable {
    var name: String
    var text: String
    var children: [S3XMLElement]

    func child(_ name: String) -> S3XMLElement? {
        self.children.first { $0.name == name }
    }

    func children(named name: String) -> [S3XMLElement] {
        self.children.filter { $0.name == name }
    }

    /// The text of the first child called `name`.
    func value(_ name: String) -> String? {
        self.child(name)?.text
    }

    /// The root element of `data`, or nil when it is not well-formed XML.
    static func parse(_ data: Data) -> S3XMLElement? {
        let parser = XMLParser(data: data)
        // S3 never needs them, and resolving them would let a hostile server make us fetch files.
        parser.shouldResolveExternalEntities = false
        let builder = S3XMLTreeBuilder()
        parser.delegate = builder
        guard parser.parse() else { return nil }
        return builder.root
    }

    /// Escapes text for an XML element's content.
    static func escape(_ text: String) -> String {
        var escaped = ""
        for character in text {
            switch character {
            case "&": escaped += "&amp;"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "\"": escaped += "&quot;"
            case "'": escaped += "&apos;"
            default: escaped.append(character)
            }
        }
        return escaped
    }
}

/// Builds an `S3XMLElement` tree from XMLParser's events; used by one parse on one thread.
private final class S3XMLTreeBuilder: NSObject, XMLParserDelegate {
    private var stack: [S3XMLElement] = []
    private(set) var root: S3XMLElement?

    func parser(
        _ parser: XMLParser,
        didStartElement elementName: String,
        namespaceURI: String?,
        qualifiedName qName: String?,
        attributes attributeDict: [String: String] = [:]
    ) {
        // Drop any namespace prefix: S3's documents use one namespace.
        let localName = elementName.split(separator: ":").last.map(String.init) ?? elementName
        self.stack.append(S3XMLElement(name: localName, text: "", children: []))
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        guard !self.stack.isEmpty else { return }
        self.stack[self.stack.count - 1].text += string
    }

    func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName qName: String?) {
        guard let element = self.stack.popLast() else { return }
        if self.stack.isEmpty {
            self.root = element
        } else {
            self.stack[self.stack.count - 1].children.append(element)
        }
    }
}
