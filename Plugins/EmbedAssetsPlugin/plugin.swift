import Foundation
import PackagePlugin

/// Embeds the package's top-level `static/` and `templates/` folders into the EaselAssets
/// module, so a release binary copied alone into an empty folder serves the whole site.
@main
struct EmbedAssetsPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: any Target) async throws -> [Command] {
        let root = context.package.directoryURL
        let folders = ["static", "templates"].map { root.appending(path: $0) }
        var inputs: [URL] = []
        for folder in folders {
            guard let walker = FileManager.default.enumerator(at: folder, includingPropertiesForKeys: [.isRegularFileKey]) else { continue }
            for case let url as URL in walker where (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true {
                if url.lastPathComponent.hasPrefix(".") { continue }
                inputs.append(url)
            }
        }
        inputs.sort { $0.path < $1.path }
        let output = context.pluginWorkDirectoryURL.appending(path: "GeneratedAssets.swift")
        // Each input is passed as "name=path" where name is relative to the package root.
        let rootPath = root.standardizedFileURL.path
        let pairs = inputs.map { url -> String in
            let full = url.standardizedFileURL.path
            var name = String(full.dropFirst(rootPath.count))
            while name.hasPrefix("/") { name.removeFirst() }
            return "\(name)=\(full)"
        }
        return [
            .buildCommand(
                displayName: "Embedding \(inputs.count) asset files",
                executable: try context.tool(named: "embed-assets").url,
                arguments: [output.path] + pairs,
                inputFiles: inputs,
                outputFiles: [output]
            )
        ]
    }
}
