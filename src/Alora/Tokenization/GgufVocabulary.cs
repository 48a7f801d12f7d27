using Alora.Formats;

namespace Alora.Tokenization;

/// <summary>GGUF token types (tokenizer.ggml.token_type).</summary>
public enum GgufTokenType
{
    Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6,
}

/// <summary>
/// The tokenizer a GGUF file carries in its metadata (tokenizer.ggml.*): a SentencePiece vocabulary
/// ("llama": pieces, scores, token types) or a GPT-2-style byte-level BPE ("gpt2": pieces and merges).
/// </summary>
/// <param name="Model">tokenizer.ggml.model: "llama" or "gpt2".</param>
/// <param name="Tokens">Piece of each id. [vocab]</param>
/// <param name="Scores">SentencePiece score of each id (higher merges first). [vocab] or null</param>
/// <param name="TokenTypes">Type of each id. [vocab] or null (all normal)</param>
/// <param name="Merges">BPE merges as "left right", best first. Null for "llama".</param>
/// <param name="PreTokenizer">tokenizer.ggml.pre: which regex splits text for a "gpt2" vocabulary.</param>
/// <param name="AddSpacePrefix">tokenizer.ggml.add_space_prefix: SentencePiece's dummy "▁" prefix (default true).</param>
public sealed record GgufVocabulary(
    string Model,
    string[] Tokens,
    float[]? Scores,
    GgufTokenType[]? TokenTypes,
    string[]? Merges,
    int? BosId,
    int? EosId,
    int? UnknownId,
    int? PaddingId,
    bool? AddBos,
    bool? AddEos,
    string? PreTokenizer,
    bool? AddSpacePrefix,
    string Source)
{
    /// <summary>Reads the tokenizer.ggml.* keys; a missing or malformed key gets an error naming it.</summary>
    public static GgufVocabulary Read(GgufFile gguf)
    {
        ArgumentNullException.ThrowIfNull(gguf);
        string model = gguf.GetString("tokenizer.ggml.model")
            ?? throw new InvalidDataException($"{gguf.Path}: metadata 'tokenizer.ggml.model' is missing; this GGUF carries no tokenizer.");
        string[] tokens = gguf.GetStringArray("tokenizer.ggml.tokens")
            ?? throw new InvalidDataException($"{gguf.Path}: metadata 'tokenizer.ggml.tokens' is missing.");
        var scores = gguf.GetFloatArray("tokenizer.ggml.scores");
        var types = gguf.GetInt32Array("tokenizer.ggml.token_type");
        if (scores != null && scores.Length != tokens.Length)
            throw new InvalidDataException($"{gguf.Path}: 'tokenizer.ggml.scores' has {scores.Length} entries, expected {tokens.Length} (one per token).");
        if (types != null && types.Length != tokens.Length)
            throw new InvalidDataException($"{gguf.Path}: 'tokenizer.ggml.token_type' has {types.Length} entries, expected {tokens.Length} (one per token).");
        int? Id(string key)
        {
            long? value = gguf.GetInteger(key);
            if (value == null) return null;
            if (value < 0 || value >= tokens.Length) return null; // llama.cpp writes -1 (as uint32 max) for "none"
            return (int)value.Value;
        }
        return new GgufVocabulary(
            model, tokens, scores, types?.Select(t => (GgufTokenType)t).ToArray(), gguf.GetStringArray("tokenizer.ggml.merges"),
            Id("tokenizer.ggml.bos_token_id"), Id("tokenizer.ggml.eos_token_id"), Id("tokenizer.ggml.unknown_token_id"), Id("tokenizer.ggml.padding_token_id"),
            gguf.GetBool("tokenizer.ggml.add_bos_token"), gguf.GetBool("tokenizer.ggml.add_eos_token"),
            gguf.GetString("tokenizer.ggml.pre"), gguf.GetBool("tokenizer.ggml.add_space_prefix"), gguf.Path);
    }

    public GgufTokenType TypeOf(int id) => TokenTypes == null ? GgufTokenType.Normal : TokenTypes[id];
}
