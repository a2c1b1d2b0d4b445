import Foundation
import PackagePlugin

/// Embeds the package's top-level `static/`, `templates/` and `locales/` folders into the EaselAssets
/// module, so a release binary copied alone into an empty folder serves the whole site.
@main
struct EmbedAssetsPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: any Target) async throws -> [Command] {
        let root = context.package.directoryURL
        let folders = ["static", "templates", "locales"].map { root.appending(path: $0) }
        // The folders themselves are inputs too: adding a file changes a folder, which reruns
        // the tool, and the tool lists the folders itself, so a new file is never missed.
        var inputs: [URL] = []
        for folder in folders {
            guard let walker = FileManager.default.enumerator(at: folder, includingPropertiesForKeys: [.isDirectoryKey]) else { continue }
            inputs.append(folder)
            for case let url as URL in walker where !url.lastPathComponent.hasPrefix(".") {
                inputs.append(url)
            }
        }
        let output = context.pluginWorkDirectoryURL.appending(path: "GeneratedAssets.swift")
        return [
            .buildCommand(
                displayName: "Embedding static/, templates/ and locales/",
                executable: try context.tool(named: "embed-assets").url,
                arguments: [output.path, root.path] + folders.map(\.path),
                inputFiles: inputs,
                outputFiles: [output]
            )
        ]
    }
}
