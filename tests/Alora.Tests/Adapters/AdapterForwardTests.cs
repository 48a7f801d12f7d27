using System.Text.Json;
using Alora.Inference;
using Alora.Models;
using Alora.Tests.Models;

namespace Alora.Tests.Adapters;

/// <summary>
/// LoRA and aLoRA in the forward pass and in generation, against the PEFT-semantics reference
/// (shared/fixtures/stories260K/expected.json), with and without KV reuse.
/// </summary>
public sealed class AdapterForwardTests : IClassFixture<BatchingTests.Stories>
{
    private readonly ModelWeights _weights;
    public AdapterForwardTests(BatchingTests.Stories stories) => _weights = stories.Weights;

    private static int[] Ints(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();

    public static TheoryData<string, int> FixtureCases()
    {
        var data = new TheoryData<string, int>();
        foreach (var name in new[] { "alora-q-k-v", "lora-all" })
            for (int i = 0; i < FixtureAdapter.Cases(name).GetArrayLength(); i++) data.Add(name, i);
        return data;
    }

    [Theory]
    [MemberData(nameof(FixtureCases))]
    public void LastFourLogitsMatchTheReference(string name, int caseIndex)
    {
        var c = FixtureAdapter.Cases(name)[caseIndex];
        using var fixture = new FixtureAdapter(name, _weights.Config);
        using var model = new DecoderModel(_weights);
        var ids = Ints(c.GetProperty("input_ids"));
        int start = AdapterActivation.Resolve(ids, fixture.Adapter, MissingInvocationPolicy.Base);
        int? expectedFirst = c.GetProperty("first_adapted_position").ValueKind == JsonValueKind.Null ? null : c.GetProperty("first_adapted_position").GetInt32();
        Assert.Equal(expectedFirst ?? int.MaxValue, start);
        int? offset = fixture.Adapter.IsActivated ? AdapterActivation.Offset(ids, fixture.Adapter.InvocationTokens) : null;
        Assert.Equal(c.GetProperty("alora_offset").ValueKind == JsonValueKind.Null ? null : c.GetProperty("alora_offset").GetInt32(), offset);

        using var cache = model.CreateCache(ids.Length);
        using var sequence = new KvSequence(cache);
        var logits = new float[ids.Length * model.VocabSize];
        model.Forward([new SequenceChunk(sequence, ids, LogitRows.All, start == int.MaxValue ? null : fixture.Adapter, start)], logits);
        var positions = Ints(c.GetProperty("positions"));
        var expected = c.GetProperty("logits_last4");
        for (int k = 0; k < positions.Length; k++)
        {
            var row = expected[k].EnumerateArray().Select(x => x.GetSingle()).ToArray();
            float diff = Reference.MaxAbsDiff(row, logits.AsSpan(positions[k] * model.VocabSize, model.VocabSize));
            Assert.True(diff <= 1e-4f, $"{name}/{c.GetProperty("name")} position {positions[k]}: max |diff| {diff}");
        }
    }

    [Theory]
    [MemberData(nameof(FixtureCases))]
    public async Task GreedyContinuationsMatchWithAndWithoutKvReuse(string name, int caseIndex)
    {
        var c = FixtureAdapter.Cases(name)[caseIndex];
        using var fixture = new FixtureAdapter(name, _weights.Config);
        using var model = new DecoderModel(_weights);
        var generator = new Generator(model, []);
        var ids = Ints(c.GetProperty("input_ids"));
        var expected = Ints(c.GetProperty("greedy_ids"));
        var request = new GenerationRequest { PromptIds = ids, MaxTokens = expected.Length, Adapter = fixture.Adapter, OnMissingInvocation = MissingInvocationPolicy.Base };
        using var cache = model.CreateCache(256);

        using (var fresh = new KvSequence(cache))
            Assert.Equal(expected, await Collect(generator, request, fresh));

        // Pattern 1: the base model has the conversation cached (and has generated); the adapter continues on that cache.
        using var shared = new KvSequence(cache);
        var baseIds = await Collect(generator, new GenerationRequest { PromptIds = ids, MaxTokens = 5 }, shared);
        Assert.Equal(Ints(c.GetProperty("base_greedy_ids"))[..5], baseIds);
        var (adapted, stats) = await CollectWithStats(generator, request, shared);
        Assert.Equal(expected, adapted);
        int start = AdapterActivation.Resolve(ids, fixture.Adapter, MissingInvocationPolicy.Base);
        // Everything before the activation start is reused (all but the last prompt token when the adapter is off).
        Assert.Equal(Math.Min(start, ids.Length - 1), stats.ReusedPromptTokens);
    }

    [Fact]
    public void PeftOffsetTestVectorsHold()
    {
        int[] invocation = [1, 2];
        Assert.Equal(3, AdapterActivation.Offset([0, 1, 2, 3], invocation));
        Assert.Null(AdapterActivation.Offset([0, 4, 5, 6], invocation));
        Assert.Equal(2, AdapterActivation.Offset([1, 2, 1, 2], invocation));
        Assert.Equal(2, AdapterActivation.Offset([0, 4, 1, 2], invocation));
        Assert.Equal(4, AdapterActivation.Offset([1, 2, 3, 4], invocation));
        Assert.Null(AdapterActivation.Offset([0, 4, 1, 4], invocation));
        Assert.Equal(2, AdapterActivation.Offset([5, 1, 1, 1], [1, 1]));   // overlapping occurrences: the last one counts
    }

    [Fact]
    public void MissingInvocationIsAnErrorByDefaultAndBaseOnRequest()
    {
        using var fixture = new FixtureAdapter("alora-q-k-v", _weights.Config);
        int[] ids = [1, 291, 370, 400, 428];
        var e = Assert.Throws<InvocationNotFoundException>(() => AdapterActivation.Resolve(ids, fixture.Adapter, MissingInvocationPolicy.Error));
        Assert.Contains("[13, 473, 467]", e.Message);
        Assert.Contains("alora-q-k-v", e.Message);
        Assert.Equal(int.MaxValue, AdapterActivation.Resolve(ids, fixture.Adapter, MissingInvocationPolicy.Base));
        Assert.Throws<ArgumentException>(() => new ForwardAdapter("empty", 5, []));
    }

    internal static async Task<int[]> Collect(Generator generator, GenerationRequest request, KvSequence sequence)
        => (await CollectWithStats(generator, request, sequence)).Ids;

    internal static async Task<(int[] Ids, GenerationStats Stats)> CollectWithStats(Generator generator, GenerationRequest request, KvSequence sequence)
    {
        var ids = new List<int>();
        GenerationStats? stats = null;
        await foreach (var update in generator.GenerateAsync(request, sequence))
        {
            if (update.TokenId >= 0) ids.Add(update.TokenId);
            stats ??= update.Stats;
        }
        return (ids.ToArray(), stats!);
    }
}
