using System.CommandLine;
using Alora.Inference;

namespace Alora.Cli;

/// <summary>llama.cpp's sampling flags, shared by `generate` and `chat`.</summary>
internal sealed class SamplingFlags
{
    public Option<float> Temperature { get; } = new("--temperature", "--temp") { Description = "0 = greedy", DefaultValueFactory = _ => 0.8f };
    public Option<int> TopK { get; } = new("--top-k") { Description = "0 = off", DefaultValueFactory = _ => 40 };
    public Option<float> TopP { get; } = new("--top-p") { Description = "1 = off", DefaultValueFactory = _ => 0.95f };
    public Option<float> MinP { get; } = new("--min-p") { Description = "0 = off", DefaultValueFactory = _ => 0.05f };
    public Option<float> RepeatPenalty { get; } = new("--repeat-penalty") { Description = "1 = off", DefaultValueFactory = _ => 1f };
    public Option<int> RepeatLastN { get; } = new("--repeat-last-n") { Description = "Tokens the penalty looks back over (-1 = all)", DefaultValueFactory = _ => 64 };
    public Option<ulong?> Seed { get; } = new("--seed", "-s") { Description = "Sampling seed (random when absent)" };

    public IEnumerable<Option> All => [Temperature, TopK, TopP, MinP, RepeatPenalty, RepeatLastN, Seed];

    public SamplingOptions Read(ParseResult parse) => new()
    {
        Temperature = parse.GetValue(Temperature),
        TopK = parse.GetValue(TopK),
        TopP = parse.GetValue(TopP),
        MinP = parse.GetValue(MinP),
        RepetitionPenalty = parse.GetValue(RepeatPenalty),
        RepetitionWindow = parse.GetValue(RepeatLastN),
        Seed = parse.GetValue(Seed),
    };
}
