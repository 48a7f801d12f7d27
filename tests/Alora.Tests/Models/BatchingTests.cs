using Alora.Inference;
using Alora.Models;

namespace Alora.Tests.Models;

/// <summary>
/// The forward pass gives the same logits however the rows are batched: one pass, token by token,
/// micro-batches, several sequences in one batch, or a forked cache. "The same" is up to f32 rounding:
/// a decode row goes through the GEMV path and a prefill row through the packed GEMM, which sum over K in
/// different orders; with logits up to ±25 that is ~1e-5, so the bound is 5e-5.
/// </summary>
public sealed class BatchingTests : IClassFixture<BatchingTests.Stories>
{
    public sealed class Stories : IDisposable
    {
        public ModelWeights Weights { get; } = ModelWeights.Load(SharedPaths.Stories260K);
        public void Dispose() => Weights.Dispose();
    }

    private const float Tolerance = 0f;
    private readonly ModelWeights _weights;
    public BatchingTests(Stories stories) => _weights = stories.Weights;

    private static readonly int[] PromptA = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267];
    private static readonly int[] PromptB = [1, 13, 473, 467, 410, 300, 301, 302];

    [Fact]
    public void TokenByTokenAndMicroBatchesEqualOnePass()
    {
        using var big = new DecoderModel(_weights, maxBatchTokens: 64);
        using var small = new DecoderModel(_weights, maxBatchTokens: 3);
        float[] full = Reference.RunAllLogits(big, PromptA);
        float microDiff = Reference.MaxAbsDiff(full, Reference.RunAllLogits(small, PromptA));
        Assert.True(microDiff <= Tolerance, $"micro-batches: max |diff| {microDiff}");

        using var cache = big.CreateCache(64);
        using var sequence = new KvSequence(cache);
        var row = new float[big.VocabSize];
        for (int t = 0; t < PromptA.Length; t++)
        {
            big.Forward([new SequenceChunk(sequence, PromptA.AsMemory(t, 1), LogitRows.Last)], row);
            float diff = Reference.MaxAbsDiff(full.AsSpan(t * big.VocabSize, big.VocabSize), row);
            Assert.True(diff <= Tolerance, $"position {t}: max |diff| {diff}");
        }
    }

    [Fact]
    public void MixedBatchOfSequencesEqualsSeparateRuns()
    {
        using var model = new DecoderModel(_weights, maxBatchTokens: 16);
        float[] a = Reference.RunAllLogits(model, PromptA), b = Reference.RunAllLogits(model, PromptB);
        using var cache = model.CreateCache(128);
        using var sa = new KvSequence(cache);
        using var sb = new KvSequence(cache);
        var both = new float[(PromptA.Length + PromptB.Length) * model.VocabSize];
        int rows = model.Forward([new SequenceChunk(sa, PromptA, LogitRows.All), new SequenceChunk(sb, PromptB, LogitRows.All)], both);
        Assert.Equal(PromptA.Length + PromptB.Length, rows);
        Assert.True(Reference.MaxAbsDiff(a, both.AsSpan(0, a.Length)) <= Tolerance);
        Assert.True(Reference.MaxAbsDiff(b, both.AsSpan(a.Length)) <= Tolerance);
    }

    [Fact]
    public void ForkedCacheContinuesLikeAFreshRun()
    {
        using var model = new DecoderModel(_weights);
        using var cache = model.CreateCache(128);
        using var prefix = new KvSequence(cache);
        var last = new float[model.VocabSize];
        model.Forward([new SequenceChunk(prefix, PromptA.AsMemory(0, 13), LogitRows.None)], last);
        using var fork = prefix.Fork();
        model.Forward([new SequenceChunk(fork, PromptB.AsMemory(1), LogitRows.Last)], last);
        int[] combined = [.. PromptA[..13], .. PromptB[1..]];
        float[] fresh = Reference.RunAllLogits(model, combined);
        Assert.True(Reference.MaxAbsDiff(fresh.AsSpan((combined.Length - 1) * model.VocabSize), last) <= Tolerance);
        Assert.Equal(13, prefix.Length);
    }

    [Fact]
    public void ADecodeStepAllocatesNothing()
    {
        using var model = new DecoderModel(_weights);
        using var cache = model.CreateCache(256);
        using var sequence = new KvSequence(cache);
        sequence.Reserve(256);
        var logits = new float[model.VocabSize];
        model.Forward([new SequenceChunk(sequence, PromptA, LogitRows.Last)], logits);
        var token = new int[] { 300 };
        SequenceChunk[] step = [new SequenceChunk(sequence, token, LogitRows.Last)];
        for (int i = 0; i < 50; i++) model.Forward(step, logits);   // warm up (JIT tiers, first-use growth)
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 20; i++) model.Forward(step, logits);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(0, allocated);
    }
}
