namespace Alora.Adapters;

// Legend: n = the number of task tensors (one per adapter that has the module), len = the elements of one tensor,
// wᵢ = task tensor i's weight, d = density.

/// <summary>
/// PEFT's task-arithmetic merges (peft/utils/merge_utils.py), on task tensors of equal length in f64:
/// <list type="bullet">
/// <item>linear (task_arithmetic): Σ wᵢ·tᵢ.</item>
/// <item>magnitude_prune: each tᵢ keeps its ⌊d·len⌋ entries of largest |·| (the rest become 0), then Σ wᵢ·tᵢ.</item>
/// <item>ties: magnitude pruning, then the elected sign per element from the pruned, unweighted tensors
/// ("total": sign of Σ tᵢ; "frequency": sign of Σ sign(tᵢ); a sum of 0 elects +), then the disjoint merge
/// Σ wᵢ·tᵢ·[sign(tᵢ) = elected] / max(1, #{i : sign(tᵢ) = elected}) (a zero entry never agrees).</item>
/// <item>dare_linear: each entry of tᵢ kept with probability d and divided by d (DARE's rescale), then Σ wᵢ·tᵢ.</item>
/// <item>dare_ties: DARE's random pruning with rescale, then ties' sign election and disjoint merge.</item>
/// </list>
/// A density ≥ 1 prunes nothing (PEFT warns and returns the tensor unchanged, with no DARE rescale).
/// </summary>
public static class TaskArithmetic
{
    /// <summary>Combines the task tensors [n][len] with their weights [n]; <paramref name="dareMasks"/> gives DARE's keep masks [n][len].</summary>
    public static double[] Combine(string combinationType, IReadOnlyList<double[]> tensors, IReadOnlyList<double> weights, double? density,
        string majoritySignMethod, Func<int, bool[]>? dareMasks)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentNullException.ThrowIfNull(weights);
        if (tensors.Count == 0 || tensors.Count != weights.Count) throw new ArgumentException("give one weight per task tensor, and at least one tensor");
        int length = tensors[0].Length;
        if (tensors.Any(t => t.Length != length)) throw new ArgumentException("task tensors must have equal lengths");
        string baseType = combinationType.EndsWith("_svd", StringComparison.Ordinal) ? combinationType[..^4] : combinationType;
        switch (baseType)
        {
            case "linear":
            case "svd":
                return WeightedSum(tensors, weights);
            case "magnitude_prune":
                return WeightedSum(tensors.Select(t => MagnitudePrune(t, RequireDensity(density, combinationType))).ToList(), weights);
            case "ties":
            {
                double d = RequireDensity(density, combinationType);
                var pruned = tensors.Select(t => MagnitudePrune(t, d)).ToList();
                return DisjointMerge(pruned, weights, MajoritySign(pruned, majoritySignMethod));
            }
            case "dare_linear":
            case "dare_ties":
            {
                double d = RequireDensity(density, combinationType);
                if (d <= 0)
                    throw new ArgumentException($"density {d} with {combinationType}: DARE divides the kept entries by the density, so it must be > 0 (PEFT would produce NaN)");
                ArgumentNullException.ThrowIfNull(dareMasks);
                var pruned = new List<double[]>(tensors.Count);
                for (int i = 0; i < tensors.Count; i++)
                {
                    if (d >= 1) { pruned.Add(tensors[i]); continue; }
                    var mask = dareMasks(i);
                    if (mask.Length != length) throw new ArgumentException($"DARE mask {i} has {mask.Length} entries, the tensor {length}");
                    pruned.Add(RandomPrune(tensors[i], mask, d));
                }
                return baseType == "dare_linear" ? WeightedSum(pruned, weights) : DisjointMerge(pruned, weights, MajoritySign(pruned, majoritySignMethod));
            }
            default:
                throw new ArgumentException($"combination type '{combinationType}' is not a task-arithmetic merge", nameof(combinationType));
        }
    }

    private static double RequireDensity(double? density, string combinationType)
    {
        if (density is not { } d)
            throw new ArgumentException($"combination type '{combinationType}' needs a density (the fraction of entries to keep, in [0, 1])", nameof(density));
        if (!(d >= 0 && d <= 1)) throw new ArgumentOutOfRangeException(nameof(density), d, $"density must lie in [0, 1] (the fraction of entries '{combinationType}' keeps)");
        return d;
    }

    public static double[] WeightedSum(IReadOnlyList<double[]> tensors, IReadOnlyList<double> weights)
    {
        var result = new double[tensors[0].Length];
        for (int i = 0; i < tensors.Count; i++)
        {
            double w = weights[i];
            var t = tensors[i];
            for (int j = 0; j < result.Length; j++) result[j] += w * t[j];
        }
        return result;
    }

    /// <summary>
    /// PEFT's magnitude_based_pruning: keeps the k = ⌊density·len⌋ entries of largest |x| (ties broken by the lower
    /// index; torch.topk's order among equal magnitudes is unspecified), zeroes the rest. density ≥ 1 keeps all.
    /// </summary>
    public static double[] MagnitudePrune(double[] tensor, double density)
    {
        if (density >= 1) return tensor;
        int k = (int)(density * tensor.Length);   // Python's int(): truncation
        var result = new double[tensor.Length];
        if (k == 0) return result;
        var order = new int[tensor.Length];
        for (int j = 0; j < order.Length; j++) order[j] = j;
        var keys = tensor.Select(v => -Math.Abs(v)).ToArray();
        Array.Sort(keys, order);   // ascending −|x|: largest |x| first; equal keys keep no particular order
        // Equal magnitudes at the cut: take the lowest indices, so the result does not depend on the sort.
        double cut = -keys[k - 1];
        int above = 0;
        for (int j = 0; j < tensor.Length; j++) if (Math.Abs(tensor[j]) > cut) { result[j] = tensor[j]; above++; }
        for (int j = 0; j < tensor.Length && above < k; j++)
            if (Math.Abs(tensor[j]) == cut) { result[j] = tensor[j]; above++; }
        return result;
    }

    /// <summary>PEFT's random_pruning with rescale: x·mask / density.</summary>
    public static double[] RandomPrune(double[] tensor, bool[] keep, double density)
    {
        var result = new double[tensor.Length];
        for (int j = 0; j < tensor.Length; j++) result[j] = keep[j] ? tensor[j] / density : 0;
        return result;
    }

    /// <summary>The elected sign per element (+1 or −1) of the stacked tensors: "total" = sign of Σ tᵢ, "frequency" = sign of Σ sign(tᵢ); ≥ 0 elects +1.</summary>
    public static int[] MajoritySign(IReadOnlyList<double[]> tensors, string method)
    {
        bool total = method switch
        {
            "total" => true,
            "frequency" => false,
            _ => throw new ArgumentException($"majority_sign_method '{method}' is not supported; expected \"total\" or \"frequency\" (PEFT's two methods)", nameof(method)),
        };
        var elected = new int[tensors[0].Length];
        for (int j = 0; j < elected.Length; j++)
        {
            double sum = 0;
            foreach (var t in tensors) sum += total ? t[j] : Math.Sign(t[j]);
            elected[j] = sum >= 0 ? 1 : -1;
        }
        return elected;
    }

    /// <summary>PEFT's disjoint_merge of the weighted tensors: the mean over the tensors whose sign agrees with the elected one (a 0 never agrees; no agreement gives 0).</summary>
    public static double[] DisjointMerge(IReadOnlyList<double[]> tensors, IReadOnlyList<double> weights, int[] elected)
    {
        var result = new double[elected.Length];
        for (int j = 0; j < result.Length; j++)
        {
            double sum = 0;
            int count = 0;
            for (int i = 0; i < tensors.Count; i++)
            {
                double v = tensors[i][j];
                if (Math.Sign(v) != elected[j]) continue;
                sum += weights[i] * v;
                count++;
            }
            result[j] = sum / Math.Max(1, count);
        }
        return result;
    }

    /// <summary>
    /// DARE's keep mask, reproducible and independent of the order in which tensors are visited: entry j is kept when
    /// U(seed, key, j) &lt; density, U a SplitMix64-derived uniform in [0, 1) (53 bits). PEFT draws it from torch's
    /// global RNG (torch.bernoulli), so a PEFT result cannot be reproduced bit for bit; the statistics are the same.
    /// </summary>
    public static bool[] DareMask(long seed, ulong key, int length, double density)
    {
        var mask = new bool[length];
        ulong stream = Mix((ulong)seed ^ Mix(key + 0x9E3779B97F4A7C15UL));
        for (int j = 0; j < length; j++)
        {
            double u = (Mix(stream + (ulong)j * 0x9E3779B97F4A7C15UL) >> 11) * (1.0 / (1UL << 53));
            mask[j] = u < density;
        }
        return mask;
    }

    private static ulong Mix(ulong z)
    {
        z += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
