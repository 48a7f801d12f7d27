using Alora.Intrinsics;

namespace Alora.Cli;

/// <summary>`--intrinsic NAME=FOLDER` (an adapter folder with its io.yaml), and io.yaml files found beside `--adapter` folders.</summary>
internal static class IntrinsicFlags
{
    public const string FileName = "io.yaml";

    /// <summary>
    /// Loads each `--intrinsic` adapter under its name and reads its io.yaml (required there); for every adapter
    /// already loaded from a folder that holds an io.yaml, reads that too. Returns the definitions by name.
    /// </summary>
    public static Dictionary<string, IntrinsicDefinition> LoadInto(LanguageModel model, IEnumerable<string>? specs, IEnumerable<string> adapterNames)
    {
        var result = new Dictionary<string, IntrinsicDefinition>(StringComparer.Ordinal);
        foreach (string name in adapterNames)
        {
            if (model.Adapters[name].SourcePath is not { } folder) continue;
            string yaml = Path.Combine(Directory.Exists(folder) ? folder : Path.GetDirectoryName(folder) ?? ".", FileName);
            if (File.Exists(yaml)) result[name] = Read(yaml, "--adapter");
        }
        foreach (string spec in specs ?? [])
        {
            int eq = spec.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0) throw new CliException($"--intrinsic: expected NAME=FOLDER (an adapter folder holding {FileName}), found '{spec}'");
            string name = spec[..eq], folder = spec[(eq + 1)..];
            if (model.Adapters.ContainsKey(name)) throw new CliException($"--intrinsic: the name '{name}' is already used by an adapter");
            string yaml = Path.Combine(folder, FileName);
            if (!File.Exists(yaml)) throw new CliException($"--intrinsic {name}: {yaml} not found; an intrinsic folder holds the adapter and its {FileName}");
            var definition = Read(yaml, "--intrinsic");
            model.LoadAdapter(name, folder);
            result[name] = definition;
        }
        return result;
    }

    private static IntrinsicDefinition Read(string path, string flag)
    {
        try { return IntrinsicDefinition.Load(path); }
        catch (Exception e) when (e is IntrinsicException or YamlException) { throw new CliException($"{flag}: {e.Message}"); }
    }
}
