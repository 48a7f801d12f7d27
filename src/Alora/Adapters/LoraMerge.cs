using System.Buffers;
using System.Runtime.CompilerServices;
using Alora.Formats;
using Alora.Kernels;
using Alora.Models;
using Alora.Tensors;

namespace Alora.Adapters;

// Legend: r = rank, in/out = a projection's input/output features.

/// <summary>
/// LoRA-only weight operations: W ← W + s·B·A (merge), W ← W − s·B·A (unmerge), and merge-and-unload into a new
/// Hugging Face folder; for DoRA, PEFT's W ← (m / ‖W + s·B·A‖)·(W + s·B·A) and its inverse. An aLoRA cannot be merged (its update applies only after the invocation), as in PEFT.
/// The update is accumulated in f64 per row and added once, so merge then unmerge restores W to f32 rounding.
/// </summary>
public static unsafe class LoraMerge
{
    /// <summary>Which adapters are merged into which loaded weights (to refuse double merges and stray unmerges).</summary>
    private static readonly ConditionalWeakTable<ModelWeights, List<LoraAdapter>> s_merged = [];

    /// <summary>
    /// Adds s·B·A to every targeted projection; those projections become writable f32 copies first. With
    /// <paramref name="safeMerge"/> (PEFT's safe_merge) every merged projection is first computed in a scratch copy and
    /// checked for NaN/±inf; if one is not finite, nothing is merged and the error names the module.
    /// </summary>
    public static void Merge(ModelWeights weights, LoraAdapter adapter, bool safeMerge = false)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(adapter);
        RefuseActivated(adapter, "merge");
        CheckBaseShapes(weights.Config, adapter, weights.Source);
        var merged = s_merged.GetOrCreateValue(weights);
        lock (merged)
        {
            if (merged.Contains(adapter))
                throw new InvalidOperationException($"adapter '{adapter.Name}' is already merged into {weights.Source}; merging it twice would apply it twice");
            if (safeMerge)
                foreach (var module in adapter.Modules)
                {
                    ref var current = ref weights.WritableProjection(module.Layer, module.Module);
                    CheckFinite(adapter, module, new ReadOnlySpan<float>((float*)current.Data, checked(module.OutFeatures * module.InFeatures)).ToArray());
                }
            var norms = adapter.IsDora ? new float[adapter.Modules.Count][] : null;
            for (int i = 0; i < adapter.Modules.Count; i++)
            {
                var module = adapter.Modules[i];
                ref var matrix = ref weights.WritableProjection(module.Layer, module.Module);
                if (norms is not null) norms[i] = MergeDora((float*)matrix.Data, matrix, module);
                else AddDelta((float*)matrix.Data, module, sign: +1);
            }
            if (norms is not null) s_doraNorms.GetOrCreateValue(weights)[adapter] = norms;
            merged.Add(adapter);
        }
    }

    /// <summary>Subtracts s·B·A again; the adapter must have been merged into these weights.</summary>
    public static void Unmerge(ModelWeights weights, LoraAdapter adapter)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(adapter);
        RefuseActivated(adapter, "unmerge");
        var merged = s_merged.GetOrCreateValue(weights);
        lock (merged)
        {
            if (!merged.Contains(adapter))
                throw new InvalidOperationException($"adapter '{adapter.Name}' is not merged into {weights.Source}; nothing to unmerge");
            float[][]? norms = null;
            if (adapter.IsDora && !s_doraNorms.GetOrCreateValue(weights).Remove(adapter, out norms))
                throw new InvalidOperationException($"adapter '{adapter.Name}': the DoRA weight norms of its merge are missing");
            for (int i = 0; i < adapter.Modules.Count; i++)
            {
                var module = adapter.Modules[i];
                ref var matrix = ref weights.WritableProjection(module.Layer, module.Module);
                if (norms is not null) UnmergeDora((float*)matrix.Data, module, norms[i]);
                else AddDelta((float*)matrix.Data, module, sign: -1);
            }
            merged.Remove(adapter);
        }
    }

    /// <summary>
    /// DoRA merges keep the weight norms n = ‖W + s·B·A‖ of the weights they merged into: unmerging needs them and
    /// cannot recompute them from the merged weights (PEFT caches them for the same reason).
    /// </summary>
    private static readonly ConditionalWeakTable<ModelWeights, Dictionary<LoraAdapter, float[][]>> s_doraNorms = [];

    /// <summary>
    /// PEFT's DoRA merge: n = ‖W + ΔW‖ per row (of the weights as they are now), then W ← (m / n)·(W + ΔW), each
    /// row in f64 and rounded once. Returns n for the unmerge.
    /// </summary>
    private static float[] MergeDora(float* weight, in WeightMatrix matrix, LoraModule module)
    {
        var norms = new float[module.OutFeatures];
        fixed (float* n = norms) Dora.WeightNorms(n, matrix, (float*)module.A.Data, (float*)module.B.Data, module.Rank, module.Scaling);
        ScaleRowsWithDelta(weight, module, norms, merge: true);
        return norms;
    }

    /// <summary>PEFT's DoRA unmerge with the norms of the merge: W ← W / (m / n) − ΔW, each row in f64.</summary>
    private static void UnmergeDora(float* weight, LoraModule module, float[] norms) => ScaleRowsWithDelta(weight, module, norms, merge: false);

    private static void ScaleRowsWithDelta(float* weight, LoraModule module, float[] norms, bool merge)
    {
        int rank = module.Rank, inFeatures = module.InFeatures;
        float* b = (float*)module.B.Data, magnitude = module.Magnitude;
        var a = new double[(long)rank * inFeatures];   // [r, in]
        for (long i = 0; i < a.LongLength; i++) a[i] = ((float*)module.A.Data)[i];
        double scaling = module.Scaling;
        Parallel.For(0, module.OutFeatures, () => new double[inFeatures], (o, _, row) =>
        {
            Array.Clear(row);
            for (int k = 0; k < rank; k++)
            {
                double coefficient = scaling * b[(long)o * rank + k];
                if (coefficient != 0) MultiplyAdd(row, a.AsSpan(k * inFeatures, inFeatures), coefficient);
            }
            double factor = (double)magnitude[o] / norms[o];   // [out] the DoRA factor m / n
            float* wRow = weight + (long)o * inFeatures;
            if (merge) for (int i = 0; i < inFeatures; i++) wRow[i] = (float)(factor * (wRow[i] + row[i]));
            else for (int i = 0; i < inFeatures; i++) wRow[i] = (float)(wRow[i] / factor - row[i]);
            return row;
        }, _ => { });
    }

    /// <summary>The adapters currently merged into <paramref name="weights"/>, in merge order.</summary>
    public static IReadOnlyList<LoraAdapter> MergedInto(ModelWeights weights)
        => s_merged.TryGetValue(weights, out var list) ? [.. list] : [];

    /// <summary>
    /// Writes a new Hugging Face folder: config.json and the other non-weight files copied, and model.safetensors
    /// holding every base tensor in its own dtype, the targeted projections with s·B·A added (in f32, rounded once).
    /// </summary>
    public static void MergeAndUnload(string baseModelFolder, LoraAdapter adapter, string outputFolder, bool safeMerge = false)
    {
        ArgumentNullException.ThrowIfNull(baseModelFolder);
        ArgumentNullException.ThrowIfNull(adapter);
        ArgumentNullException.ThrowIfNull(outputFolder);
        RefuseActivated(adapter, "merge-and-unload");
        if (!Directory.Exists(baseModelFolder))
            throw new DirectoryNotFoundException($"base model folder not found: {baseModelFolder} (merge-and-unload needs a Hugging Face folder with config.json and safetensors)");
        string inputFull = Path.TrimEndingDirectorySeparator(Path.GetFullPath(baseModelFolder));
        string outputFull = Path.TrimEndingDirectorySeparator(Path.GetFullPath(outputFolder));
        if (string.Equals(inputFull, outputFull, StringComparison.Ordinal))
            throw new ArgumentException($"the output folder {outputFolder} is the base model folder; write the merged model somewhere else", nameof(outputFolder));

        string configPath = Path.Combine(baseModelFolder, "config.json");
        var config = ModelConfig.FromFile(configPath);
        CheckBaseShapes(config, adapter, baseModelFolder);
        Directory.CreateDirectory(outputFolder);

        using var checkpoint = SafeTensorsCheckpoint.Open(baseModelFolder);
        var byWeightName = adapter.Modules.ToDictionary(m => LoraConfig.ModuleKey(m.Layer, m.Module) + ".weight", StringComparer.Ordinal);
        var tensors = new List<SafeTensorToWrite>();
        var keepAlive = new List<PointerMemory>();
        foreach (string name in checkpoint.TensorNames.Order(StringComparer.Ordinal))
        {
            var (file, info) = checkpoint.Get(name);
            if (byWeightName.Remove(name, out var module))
            {
                var dtype = info.ToWeightDType(file.Path);
                if (info.Shape.Length != 2 || info.Shape[0] != module.OutFeatures || info.Shape[1] != module.InFeatures)
                    throw new ModelFormatException(
                        $"{file.Path}: tensor '{name}' has shape {SafeTensorsFile.FormatShape(info.Shape)}, the adapter expects [{module.OutFeatures}, {module.InFeatures}]: wrong base model?");
                tensors.Add(new SafeTensorToWrite(name, info.DType, info.Shape, MergedBytes(file.DataPointer(info), dtype, module, safeMerge ? adapter : null)));
            }
            else
            {
                // Unchanged tensors are written straight from the memory map.
                var memory = new PointerMemory(file.DataPointer(info), checked((int)(info.End - info.Begin)));
                keepAlive.Add(memory);
                tensors.Add(new SafeTensorToWrite(name, info.DType, info.Shape, memory.Memory));
            }
        }
        if (byWeightName.Count > 0)
            throw new ModelFormatException($"{baseModelFolder}: the checkpoint has no tensor '{byWeightName.Keys.First()}', which the adapter changes: wrong base model?");

        SafeTensorsWriter.Write(Path.Combine(outputFolder, "model.safetensors"), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        GC.KeepAlive(keepAlive);
        foreach (string source in Directory.GetFiles(baseModelFolder))
        {
            string fileName = Path.GetFileName(source);
            if (IsWeightFile(fileName)) continue;
            File.Copy(source, Path.Combine(outputFolder, fileName), overwrite: true);
        }
    }

    /// <summary>Files that hold weights (replaced by the merged model.safetensors) and are therefore not copied.</summary>
    private static bool IsWeightFile(string fileName)
        => fileName.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase)
        || fileName.Equals("model.safetensors.index.json", StringComparison.OrdinalIgnoreCase)
        || fileName.EndsWith(".bin", StringComparison.OrdinalIgnoreCase)
        || fileName.EndsWith(".pt", StringComparison.OrdinalIgnoreCase)
        || fileName.EndsWith(".pth", StringComparison.OrdinalIgnoreCase)
        || fileName.EndsWith(".ckpt", StringComparison.OrdinalIgnoreCase)
        || fileName.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase);

    /// <summary>The merged weight in the base dtype: W (converted to f32) + s·B·A, rounded once back.</summary>
    private static byte[] MergedBytes(byte* source, DType dtype, LoraModule module, LoraAdapter? checkFor)
    {
        long count = (long)module.OutFeatures * module.InFeatures;
        var merged = new float[count];   // [out, in]
        fixed (float* w = merged) Kernels.Convert.ToSingle(w, source, dtype, count);
        if (checkFor is not null) CheckFinite(checkFor, module, merged);
        else MergeInto(merged, module);
        var bytes = new byte[count * dtype.ByteSize()];
        fixed (byte* b = bytes)
        {
            for (long i = 0; i < count; i++)
            {
                switch (dtype)
                {
                    case DType.F32: ((float*)b)[i] = merged[i]; break;
                    case DType.BF16: ((ushort*)b)[i] = Half16.SingleToBFloat16(merged[i]); break;
                    default: ((ushort*)b)[i] = Half16.SingleToHalf(merged[i]); break;
                }
            }
        }
        return bytes;
    }

    /// <summary>Merges the module into W [out, in] held in <paramref name="weight"/> (LoRA or DoRA, as Merge does).</summary>
    private static void MergeInto(float[] weight, LoraModule module)
    {
        fixed (float* w = weight)
        {
            if (module.IsDora) MergeDora(w, new WeightMatrix(w, DType.F32, module.OutFeatures, module.InFeatures), module);
            else AddDelta(w, module, sign: +1);
        }
    }

    /// <summary>
    /// safe_merge's check: merges the module into <paramref name="scratch"/> (a copy of W [out, in], f32) and refuses
    /// the merge when an element is NaN or ±inf (PEFT: "NaNs detected in the merged weights"). On success the scratch holds
    /// the merged weights.
    /// </summary>
    private static void CheckFinite(LoraAdapter adapter, LoraModule module, float[] scratch)
    {
        MergeInto(scratch, module);
        for (int j = 0; j < scratch.Length; j++)
        {
            if (float.IsFinite(scratch[j])) continue;
            throw new InvalidOperationException(
                $"safe merge: merging adapter '{adapter.Name}' would make {LoraConfig.ModuleKey(module.Layer, module.Module)}.weight non-finite " +
                $"({scratch[j]} at row {j / module.InFeatures}, column {j % module.InFeatures}): the adapter seems to be broken; nothing was merged");
        }
    }

    /// <summary>W[o, :] += sign · Σ_k s·B[o, k]·A[k, :], each row summed in f64 and rounded once. W is [out, in] f32.</summary>
    internal static void AddDelta(float* weight, LoraModule module, int sign)
    {
        int rank = module.Rank, inFeatures = module.InFeatures;
        float* b = (float*)module.B.Data;   // [out, r]
        // A in f64 once, so the per-row loop is a plain f64 multiply-add the JIT vectorizes through Vector<double>.
        var a = new double[(long)rank * inFeatures];   // [r, in]
        for (long i = 0; i < a.LongLength; i++) a[i] = ((float*)module.A.Data)[i];
        double scaling = sign * (double)module.Scaling;
        Parallel.For(0, module.OutFeatures, () => new double[inFeatures], (o, _, row) =>
        {
            Array.Clear(row);
            for (int k = 0; k < rank; k++)
            {
                double coefficient = scaling * b[(long)o * rank + k];
                if (coefficient == 0) continue;
                MultiplyAdd(row, a.AsSpan(k * inFeatures, inFeatures), coefficient);
            }
            float* wRow = weight + (long)o * inFeatures;
            for (int i = 0; i < inFeatures; i++) wRow[i] = (float)(wRow[i] + row[i]);
            return row;
        }, _ => { });
    }

    /// <summary>accumulator[i] += coefficient · values[i] (f64, vectorized; scalar tail).</summary>
    private static void MultiplyAdd(Span<double> accumulator, ReadOnlySpan<double> values, double coefficient)
    {
        int i = 0;
        if (System.Numerics.Vector.IsHardwareAccelerated)
        {
            var c = new System.Numerics.Vector<double>(coefficient);
            var acc = System.Runtime.InteropServices.MemoryMarshal.Cast<double, System.Numerics.Vector<double>>(accumulator);
            var val = System.Runtime.InteropServices.MemoryMarshal.Cast<double, System.Numerics.Vector<double>>(values);
            for (int v = 0; v < acc.Length; v++) acc[v] += c * val[v];
            i = acc.Length * System.Numerics.Vector<double>.Count;
        }
        for (; i < accumulator.Length; i++) accumulator[i] += coefficient * values[i];
    }

    internal static void RefuseActivated(LoraAdapter adapter, string operation)
    {
        if (adapter.Arrow is not null)
            throw new InvalidOperationException(
                $"adapter '{adapter.Name}' is an Arrow model: it cannot {operation}, because it routes each token to its own mix of experts, which one weight matrix cannot express (PEFT refuses merging an Arrow router too). Serve it unmerged.");
        if (adapter.IsActivated)
            throw new InvalidOperationException(
                $"adapter '{adapter.Name}' is an aLoRA (invocation tokens [{string.Join(", ", adapter.InvocationTokens!)}]): it cannot {operation}, because its update applies only " +
                "from the invocation sequence on, which merged weights cannot express (PEFT refuses this too). Serve it unmerged.");
    }

    /// <summary>The adapter's modules must fit this base model's layer count and projection shapes.</summary>
    internal static void CheckBaseShapes(ModelConfig config, LoraAdapter adapter, string baseSource)
    {
        foreach (var m in adapter.Modules)
        {
            if (m.Layer >= config.LayerCount)
                throw new ModelFormatException($"adapter '{adapter.Name}' has a {m.Module} for layer {m.Layer}, but {baseSource} has {config.LayerCount} layers: wrong base model?");
            var (outFeatures, inFeatures) = Models.ParameterLayout.ProjectionShape(config, m.Module);
            if (outFeatures != m.OutFeatures || inFeatures != m.InFeatures)
                throw new ModelFormatException(
                    $"adapter '{adapter.Name}': layer {m.Layer} {m.Module} is [{m.OutFeatures}, {m.InFeatures}] (out, in), but in {baseSource} it is [{outFeatures}, {inFeatures}]: wrong base model?");
        }
    }

    /// <summary>Memory over a region of a memory map (the map outlives the write).</summary>
    private sealed class PointerMemory(byte* pointer, int length) : MemoryManager<byte>
    {
        public override Span<byte> GetSpan() => new(pointer, length);
        public override MemoryHandle Pin(int elementIndex = 0) => new(pointer + elementIndex);
        public override void Unpin() { }
        protected override void Dispose(bool disposing) { }
    }
}
