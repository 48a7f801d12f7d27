using System.Text.Json;
using Alora.Tokenization;

namespace Alora.Tests.Tokenization;

/// <summary>One row of shared/fixtures/tokenizers/*.jsonl.</summary>
public sealed record TokenizerFixtureRow(string Id, string Category, string Text, int[] Ids, int[] IdsNoSpecial, string[] Tokens,
    string Decoded, string DecodedSkipSpecial, string? RustDecoded, string? RustDecodedSkipSpecial)
{
    /// <summary>
    /// The decode expectation per shared/fixtures/README.md: transformers.js's value, except that its
    /// TextDecoder drops a leading BOM that Rust and Python keep; there the BOM goes back in, at the place
    /// the rust_* value shows it (the rust_* value itself is not taken whole: for normalized special tokens
    /// it keeps "&lt;s&gt; " that transformers.js, like SentencePiece, removes).
    /// </summary>
    public string ExpectedDecoded => RestoreBom(Decoded, RustDecoded);

    public string ExpectedDecodedSkipSpecial => RestoreBom(DecodedSkipSpecial, RustDecodedSkipSpecial);

    private string RestoreBom(string transformersJs, string? rust)
    {
        if (!Text.StartsWith('\uFEFF') || rust == null || transformersJs.Contains('\uFEFF')) return transformersJs;
        int bom = rust.IndexOf('\uFEFF');
        if (bom < 0) return transformersJs;
        string afterBom = rust[(bom + 1)..];
        return transformersJs.EndsWith(afterBom, StringComparison.Ordinal)
            ? transformersJs[..^afterBom.Length] + "\uFEFF" + afterBom
            : transformersJs;
    }
}

/// <summary>Reads the tokenizer fixtures and the tokenizers they were made with; tokenizers are loaded once.</summary>
public static class TokenizerFixtures
{
    public static readonly string[] Names = ["granite3", "llama3", "maykeye-tinyllama-v0", "qwen3", "stories260K", "tinyllama-special-tokens"];

    private static readonly Dictionary<string, Tokenizer> Loaded = new();

    public static string FolderOf(string name) => name == "stories260K"
        ? SharedPaths.Path("models", "stories260K")
        : SharedPaths.Path("tokenizers", name);

    public static Tokenizer Load(string name)
    {
        lock (Loaded)
        {
            if (!Loaded.TryGetValue(name, out var tokenizer)) Loaded[name] = tokenizer = Tokenizer.FromModelFolder(FolderOf(name));
            return tokenizer;
        }
    }

    public static List<TokenizerFixtureRow> Rows(string name)
    {
        string path = SharedPaths.Path("fixtures", "tokenizers", name + ".jsonl");
        var rows = new List<TokenizerFixtureRow>();
        // Split on '\n' only: the strings hold raw U+0085, U+2028 and U+2029.
        foreach (var line in File.ReadAllText(path).Split('\n'))
        {
            if (line.Length == 0) continue;
            using var doc = JsonDocument.Parse(line);
            var r = doc.RootElement;
            string? Opt(string field) => r.TryGetProperty(field, out var v) ? v.GetString() : null;
            rows.Add(new TokenizerFixtureRow(
                r.GetProperty("id").GetString()!, r.GetProperty("category").GetString()!, r.GetProperty("text").GetString()!,
                r.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToArray(),
                r.GetProperty("ids_no_special").EnumerateArray().Select(x => x.GetInt32()).ToArray(),
                r.GetProperty("tokens").EnumerateArray().Select(x => x.GetString()!).ToArray(),
                r.GetProperty("decoded").GetString()!, r.GetProperty("decoded_skip_special").GetString()!,
                Opt("rust_decoded"), Opt("rust_decoded_skip_special")));
        }
        return rows;
    }

    public static string Show(int[] ids) => "[" + string.Join(", ", ids) + "]";

    public static string Escape(string text) => JsonSerializer.Serialize(text);
}
