using Alora.Kernels;
using Alora.Models;
using Alora.Tensors;

namespace Alora.Tests;

/// <summary>Random LoRA and aLoRA adapters for a base config, their memory freed with the kit.</summary>
internal sealed class RandomAdapterKit(ModelConfig config) : IDisposable
{
    private readonly List<NativeSlab> _slabs = [];

    /// <summary>An adapter on a random subset of projections with random ranks and weights large enough to matter.</summary>
    public unsafe ForwardAdapter Create(Random random, string name, int[]? invocation)
    {
        var adapter = new ForwardAdapter(name, config.LayerCount, invocation);
        foreach (var module in ForwardAdapter.Modules)
        {
            if (random.NextDouble() < 0.3) continue;
            int rank = random.Next(1, 9);
            var (outFeatures, inFeatures) = ParameterLayout.ProjectionShape(config, module);
            for (int layer = 0; layer < config.LayerCount; layer++)
            {
                var slab = new NativeSlab((long)rank * (inFeatures + outFeatures) * 4 + 128, "test adapter");
                _slabs.Add(slab);
                float* a = slab.TakeFloats((long)rank * inFeatures, "A"), b = slab.TakeFloats((long)outFeatures * rank, "B");
                for (long i = 0; i < (long)rank * inFeatures; i++) a[i] = (float)(random.NextDouble() - 0.5) * 0.4f;
                for (long i = 0; i < (long)outFeatures * rank; i++) b[i] = (float)(random.NextDouble() - 0.5) * 0.1f;
                adapter.Set(layer, module, new LowRankDelta(new WeightMatrix(a, DType.F32, rank, inFeatures), new WeightMatrix(b, DType.F32, outFeatures, rank), (float)(random.NextDouble() * 3)));
            }
        }
        return adapter;
    }

    public void Dispose() { foreach (var s in _slabs) s.Dispose(); }
}
