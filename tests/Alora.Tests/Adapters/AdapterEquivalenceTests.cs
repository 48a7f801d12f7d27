using Alora.Inference;
using Alora.Kernels;
using Alora.Models;
using Alora.Tensors;
using Alora.Tests.Models;

namespace Alora.Tests.Adapters;

/// <summary>Equivalences on random prompts, random adapters and random activation points.</summary>
public sealed class AdapterEquivalenceTests : IClassFixture<BatchingTests.Stories>, IDisposable
{
    private readonly ModelWeights _weights;
    private readonly RandomAdapterKit _kit;

    public AdapterEquivalenceTests(BatchingTests.Stories stories)
    {
        _weights = stories.Weights;
        _kit = new RandomAdapterKit(stories.Weights.Config);
    }

    public void Dispose() => _kit.Dispose();

    private ForwardAdapter RandomAdapter(Random random, string name, int[]? invocation) => _kit.Create(random, name, invocation);

    private static int[] RandomIds(Random random, int n) => [1, .. Enumerable.Range(0, n - 1).Select(_ => random.Next(3, 512))];

    private static float[] Logits(DecoderModel model, KvSequence sequence, int[] ids, ForwardAdapter? adapter, int start)
    {
        var logits = new float[ids.Length * model.VocabSize];
        model.Forward([new SequenceChunk(sequence, ids, LogitRows.All, adapter, start)], logits);
        return logits;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void AloraOnReusedBaseKvEqualsRecomputingFromScratch(int seed)
    {
        var random = new Random(seed);
        using var model = new DecoderModel(_weights, maxBatchTokens: 64);
        using var cache = model.CreateCache(512);
        int[] invocation = [13, 473, 467];
        var adapter = RandomAdapter(random, "a", invocation);
        int before = random.Next(5, 60), after = random.Next(1, 20);
        int[] ids = [.. RandomIds(random, before), .. invocation, .. RandomIds(random, after)[1..]];
        int start = AdapterActivation.Resolve(ids, adapter, MissingInvocationPolicy.Error);
        Assert.Equal(before, start);

        using var scratch = new KvSequence(cache);
        float[] full = Logits(model, scratch, ids, adapter, start);

        using var reused = new KvSequence(cache);
        float[] prefix = Logits(model, reused, ids[..start], null, int.MaxValue);          // the base model's conversation
        float[] tail = Logits(model, reused, ids[start..], adapter, start);                // the aLoRA call on the same cache
        int v = model.VocabSize;
        float diffBefore = Reference.MaxAbsDiff(full.AsSpan(0, start * v), prefix);
        float diffAfter = Reference.MaxAbsDiff(full.AsSpan(start * v), tail);
        Assert.True(diffBefore <= 0f, $"positions before the activation start: max |diff| {diffBefore}");
        Assert.True(diffAfter <= 0f, $"adapted positions: max |diff| {diffAfter}");
    }

    [Theory]
    [InlineData(4)]
    [InlineData(5)]
    public void LogitsBeforeTheActivationStartAreTheBaseModels(int seed)
    {
        var random = new Random(seed);
        using var model = new DecoderModel(_weights, maxBatchTokens: 64);
        using var cache = model.CreateCache(512);
        var adapter = RandomAdapter(random, "a", [13, 473, 467]);
        int[] ids = [.. RandomIds(random, random.Next(5, 50)), 13, 473, 467, .. RandomIds(random, 10)[1..]];
        int start = AdapterActivation.Resolve(ids, adapter, MissingInvocationPolicy.Error);
        using var withAdapter = new KvSequence(cache);
        using var withoutAdapter = new KvSequence(cache);
        float[] a = Logits(model, withAdapter, ids, adapter, start), b = Logits(model, withoutAdapter, ids, null, 0);
        int v = model.VocabSize;
        Assert.Equal(b.AsSpan(0, start * v).ToArray(), a.AsSpan(0, start * v).ToArray());   // bitwise: the same rows, the same batch
        Assert.True(Reference.MaxAbsDiff(a.AsSpan(start * v), b.AsSpan(start * v)) > 1e-3f, "the adapter must change the adapted rows");
    }

    [Fact]
    public void ForkedBranchesEqualIndependentRuns()
    {
        var random = new Random(6);
        using var model = new DecoderModel(_weights, maxBatchTokens: 64);
        using var cache = model.CreateCache(1024);
        var adapter = RandomAdapter(random, "a", [13, 473, 467]);
        int[] prefix = RandomIds(random, 37);                        // not a multiple of the block size: the fork shares a partial block
        int[] aloraTail = [13, 473, 467, 300, 301];
        int[] baseTail = [290, 291, 292];

        // Pattern 2: the shared prefix is prefilled by the base model, then forked into an aLoRA branch and a base branch.
        using var trunk = new KvSequence(cache);
        Logits(model, trunk, prefix, null, 0);
        using var aloraBranch = trunk.Fork();
        using var baseBranch = trunk.Fork();
        float[] aloraLogits = Logits(model, aloraBranch, aloraTail, adapter, prefix.Length);
        float[] baseLogits = Logits(model, baseBranch, baseTail, null, 0);

        using var independentAlora = new KvSequence(cache);
        using var independentBase = new KvSequence(cache);
        int v = model.VocabSize;
        float[] expectedAlora = Logits(model, independentAlora, [.. prefix, .. aloraTail], adapter, prefix.Length);
        float[] expectedBase = Logits(model, independentBase, [.. prefix, .. baseTail], null, 0);
        Assert.True(Reference.MaxAbsDiff(expectedAlora.AsSpan(prefix.Length * v), aloraLogits) <= 0f);
        Assert.True(Reference.MaxAbsDiff(expectedBase.AsSpan(prefix.Length * v), baseLogits) <= 0f);
        Assert.Equal(aloraBranch.BlockTable[0], baseBranch.BlockTable[0]);     // full blocks stay shared
        Assert.NotEqual(aloraBranch.BlockTable[2], baseBranch.BlockTable[2]);  // the partial block was copied on write
    }

    [Fact]
    public void MixedBatchEqualsSeparateRuns()
    {
        var random = new Random(7);
        using var model = new DecoderModel(_weights, maxBatchTokens: 256);
        using var cache = model.CreateCache(2048);
        var alora = RandomAdapter(random, "alora", [13, 473, 467]);
        var lora = RandomAdapter(random, "lora", null);
        var otherAlora = RandomAdapter(random, "other", [473, 467]);
        var requests = new (int[] Ids, ForwardAdapter? Adapter)[]
        {
            ([.. RandomIds(random, 20), 13, 473, 467, 5, 6], alora),
            (RandomIds(random, 17), null),
            (RandomIds(random, 30), lora),
            ([.. RandomIds(random, 9), 473, 467, 8, 9, 10, 11], otherAlora),
            ([.. RandomIds(random, 12), 13, 473, 467], alora),
        };
        int v = model.VocabSize;
        var separate = new List<float[]>();
        foreach (var (ids, adapter) in requests)
        {
            using var sequence = new KvSequence(cache);
            separate.Add(Logits(model, sequence, ids, adapter, AdapterActivation.Resolve(ids, adapter, MissingInvocationPolicy.Error)));
        }
        var sequences = requests.Select(_ => new KvSequence(cache)).ToArray();
        try
        {
            var chunks = requests.Select((r, i) => new SequenceChunk(sequences[i], r.Ids, LogitRows.All, r.Adapter,
                AdapterActivation.Resolve(r.Ids, r.Adapter, MissingInvocationPolicy.Error))).ToArray();
            var mixed = new float[requests.Sum(r => r.Ids.Length) * v];
            model.Forward(chunks, mixed);
            int offset = 0;
            for (int i = 0; i < requests.Length; i++)
            {
                float diff = Reference.MaxAbsDiff(separate[i], mixed.AsSpan(offset, separate[i].Length));
                Assert.True(diff <= 0f, $"request {i}: max |diff| {diff}");
                offset += separate[i].Length;
            }
        }
        finally
        {
            foreach (var s in sequences) s.Dispose();
        }
    }

    [Fact]
    public async Task LineageDecidesWhatIsReused()
    {
        var random = new Random(8);
        using var model = new DecoderModel(_weights);
        using var cache = model.CreateCache(1024);
        var alora = RandomAdapter(random, "alora", [13, 473, 467]);
        var other = RandomAdapter(random, "other", [13, 473, 467]);
        var generator = new Generator(model, []);
        using var sequence = new KvSequence(cache);
        int[] conversation = RandomIds(random, 40);

        var (_, s1) = await AdapterForwardTests.CollectWithStats(generator, new GenerationRequest { PromptIds = conversation, MaxTokens = 4 }, sequence);
        Assert.Equal(0, s1.ReusedPromptTokens);
        Assert.Equal(43, sequence.Length);                                           // 40 + 4 generated, the last one not fed back

        int[] invoked = [.. conversation, 13, 473, 467];
        var (_, s2) = await AdapterForwardTests.CollectWithStats(generator, new GenerationRequest { PromptIds = invoked, MaxTokens = 3, Adapter = alora }, sequence);
        Assert.Equal(40, s2.ReusedPromptTokens);                                     // the base KV up to the invocation
        Assert.Same(alora, sequence.ComputedBy(40));
        Assert.Null(sequence.ComputedBy(39));

        var (_, s3) = await AdapterForwardTests.CollectWithStats(generator, new GenerationRequest { PromptIds = invoked, MaxTokens = 2, Adapter = other }, sequence);
        Assert.Equal(40, s3.ReusedPromptTokens);                                     // another adapter's KV is never served

        int[] continued = [.. invoked, 300, 301];
        var (_, s4) = await AdapterForwardTests.CollectWithStats(generator, new GenerationRequest { PromptIds = continued, MaxTokens = 2 }, sequence);
        Assert.Equal(40, s4.ReusedPromptTokens);                                     // nor an adapter's KV to the base model
        Assert.Null(sequence.ComputedBy(41));

        var (_, s5) = await AdapterForwardTests.CollectWithStats(generator, new GenerationRequest { PromptIds = continued, MaxTokens = 2 }, sequence);
        Assert.Equal(continued.Length - 1, s5.ReusedPromptTokens);                   // the base model's own KV is
    }
}
