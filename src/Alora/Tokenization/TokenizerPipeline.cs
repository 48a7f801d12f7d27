namespace Alora.Tokenization;

/// <summary>The stages of a tokenizer, as tokenizer.json describes them (or as built from a GGUF vocabulary).</summary>
internal sealed record TokenizerPipeline(
    Normalizer? Normalizer,
    PreTokenizer? PreTokenizer,
    bool MapBytesBeforeModel,     // the last pre-tokenizer is ByteLevel, whose byte mapping is done right before the model
    TokenizerModel Model,
    PostProcessor? PostProcessor,
    Decoder? Decoder,
    IReadOnlyList<AddedToken> AddedTokens);
