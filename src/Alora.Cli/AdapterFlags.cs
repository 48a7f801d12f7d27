namespace Alora.Cli;

/// <summary>`--adapter NAME=PATH` (repeatable), as generate, serve and chat take it.</summary>
internal static class AdapterFlags
{
    /// <summary>
    /// Loads every `--adapter` spec into the model and returns the names in order. With
    /// <paramref name="nameOptional"/>, a bare PATH is named after its folder or .gguf file (generate's shorthand).
    /// PATH is a PEFT adapter folder or a llama.cpp GGUF LoRA/aLoRA file.
    /// </summary>
    public static List<string> LoadInto(LanguageModel model, IEnumerable<string>? specs, bool nameOptional = false)
    {
        var names = new List<string>();
        foreach (string spec in specs ?? [])
        {
            int eq = spec.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0 && !nameOptional) throw new CliException($"--adapter: expected NAME=PATH, found '{spec}'");
            string path = eq > 0 ? spec[(eq + 1)..] : spec;
            string name = eq > 0 ? spec[..eq]
                : path.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase) ? Path.GetFileNameWithoutExtension(path)
                : Path.GetFileName(Path.TrimEndingDirectorySeparator(path));
            if (names.Contains(name)) throw new CliException($"--adapter: the name '{name}' is used twice");
            model.LoadAdapter(name, path);
            names.Add(name);
        }
        return names;
    }
}
