using System.Text.Json;
using Alora.Formats;
using Alora.Tokenization;

namespace Alora.Tests.Tokenization;

/// <summary>
/// GPT-2-style GGUF vocabularies ("gpt2"), written the way llama.cpp's converter writes them from a
/// tokenizer.json (pieces by id, merges as "a b", special added tokens as control pieces), must tokenize
/// every fixture string as the tokenizer.json does.
/// </summary>
public class GgufByteLevelTests
{
    private static string WriteGguf(string name, string pre, TempFolder folder)
    {
        using var document = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(TokenizerFixtures.FolderOf(name), "tokenizer.json")));
        var root = document.RootElement;
        var model = root.GetProperty("model");
        var byId = new SortedDictionary<int, (string Piece, int Type)>();
        foreach (var entry in model.GetProperty("vocab").EnumerateObject()) byId[entry.Value.GetInt32()] = (entry.Name, (int)GgufTokenType.Normal);
        foreach (var added in root.GetProperty("added_tokens").EnumerateArray())
            byId[added.GetProperty("id").GetInt32()] = (added.GetProperty("content").GetString()!,
                (int)(added.GetProperty("special").GetBoolean() ? GgufTokenType.Control : GgufTokenType.UserDefined));
        Assert.Equal(byId.Count, byId.Keys.Max() + 1); // ids are dense, as GGUF needs
        var merges = model.GetProperty("merges").EnumerateArray()
            .Select(m => m.ValueKind == JsonValueKind.String ? m.GetString()! : m[0].GetString() + " " + m[1].GetString()).ToArray();

        var tokenizer = TokenizerFixtures.Load(name);
        var metadata = new List<KeyValuePair<string, object>>
        {
            new("general.architecture", "llama"),
            new("tokenizer.ggml.model", "gpt2"),
            new("tokenizer.ggml.pre", pre),
            new("tokenizer.ggml.tokens", byId.Values.Select(v => v.Piece).ToArray()),
            new("tokenizer.ggml.token_type", byId.Values.Select(v => v.Type).ToArray()),
            new("tokenizer.ggml.merges", merges),
            new("tokenizer.ggml.add_bos_token", false),
        };
        if (tokenizer.BosTokenId is int bos) metadata.Add(new("tokenizer.ggml.bos_token_id", (uint)bos));
        if (tokenizer.EosTokenId is int eos) metadata.Add(new("tokenizer.ggml.eos_token_id", (uint)eos));
        string path = folder.File(name + ".gguf");
        GgufWriter.Write(path, metadata, []);
        return path;
    }

    [Theory]
    [InlineData("granite3", "gpt2")]
    [InlineData("llama3", "llama-bpe")]
    [InlineData("qwen3", "qwen2")]
    public void GgufMatchesTokenizerJsonOnFixtures(string name, string pre)
    {
        using var folder = new TempFolder();
        var fromGguf = Tokenizer.Load(WriteGguf(name, pre, folder));
        // tokenizer.json alone: a GGUF has no tokenizer_config.json, so no clean-up of " ." on decode.
        var fromJson = Tokenizer.FromTokenizerJson(Path.Combine(TokenizerFixtures.FolderOf(name), "tokenizer.json"));
        Assert.Equal(fromJson.VocabSize, fromGguf.VocabSize);
        var failures = new List<string>();
        foreach (var row in TokenizerFixtures.Rows(name))
        {
            // llama.cpp applies no Unicode normalizer (Qwen's tokenizer.json has NFC): compare NFC-stable text only.
            if (UnicodeNormalization.Normalize(row.Text, System.Text.NormalizationForm.FormC) != row.Text) continue;
            var ids = fromGguf.Encode(row.Text, addSpecialTokens: false);
            if (!ids.SequenceEqual(row.IdsNoSpecial)) failures.Add($"{row.Id}: expected {TokenizerFixtures.Show(row.IdsNoSpecial)}, got {TokenizerFixtures.Show(ids)}");
            string decoded = fromGguf.Decode(row.IdsNoSpecial, skipSpecialTokens: true);
            string expected = fromJson.Decode(row.IdsNoSpecial, skipSpecialTokens: true);
            if (decoded != expected)
                failures.Add($"{row.Id} decode: expected {TokenizerFixtures.Escape(expected)}, got {TokenizerFixtures.Escape(decoded)}");
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(10)));
    }
}
