namespace Alora.Adapters;

/// <summary>Which DARE mask is asked for: one module's lora_A, lora_B (non-svd types) or full "delta" (svd types), of the adapter at AdapterIndex in the caller's list.</summary>
public readonly record struct DareMaskRequest(int Layer, string Module, string Tensor, int AdapterIndex, int Length);

/// <summary>
/// add_weighted_adapter's parameters beyond the adapters, weights and type (PEFT's names in brackets).
/// PEFT's svd_full_matrices and svd_driver are not here: they choose how torch computes the SVD (full or reduced
/// U/Vᴴ, a cuSOLVER driver) and do not change the truncated result.
/// </summary>
public sealed record CombinationOptions
{
    /// <summary>[svd_rank] Rank of an svd type's result; default: the largest rank of the adapters.</summary>
    public int? SvdRank { get; init; }

    /// <summary>[svd_clamp] Quantile q in [0, 1]: B and A of an svd type are clamped to ± their entries' q-quantile. Null: no clamping.</summary>
    public double? SvdClamp { get; init; }

    /// <summary>[density] Fraction of entries kept by ties, dare_* and magnitude_prune types, in [0, 1] (required by them; &gt; 0 for DARE).</summary>
    public double? Density { get; init; }

    /// <summary>[majority_sign_method] "total" (sign of the sum) or "frequency" (sign of the count of signs), for ties and dare_ties.</summary>
    public string MajoritySignMethod { get; init; } = "total";

    /// <summary>Seed of DARE's random masks (PEFT uses torch's global RNG; see <see cref="TaskArithmetic.DareMask"/>).</summary>
    public long Seed { get; init; }

    /// <summary>Supplies DARE's keep masks instead of the seeded generator (a mask must have Length entries).</summary>
    public Func<DareMaskRequest, bool[]>? DareMask { get; init; }

    internal void Validate(string type)
    {
        if (SvdRank is <= 0) throw new ArgumentOutOfRangeException(nameof(SvdRank), SvdRank, "svd rank must be positive");
        if (SvdClamp is { } clamp && !(clamp >= 0 && clamp <= 1))
            throw new ArgumentOutOfRangeException(nameof(SvdClamp), clamp, "svd_clamp is a quantile and must lie in [0, 1]");
        if (MajoritySignMethod is not ("total" or "frequency"))
            throw new ArgumentException($"majority_sign_method '{MajoritySignMethod}' is not supported; expected \"total\" or \"frequency\"", nameof(MajoritySignMethod));
        bool pruning = type.StartsWith("ties", StringComparison.Ordinal) || type.StartsWith("dare", StringComparison.Ordinal) || type.StartsWith("magnitude_prune", StringComparison.Ordinal);
        if (pruning && Density is null)
            throw new ArgumentException($"combination type '{type}' needs a density (the fraction of entries to keep, in [0, 1])", nameof(Density));
        if (Density is { } d)
        {
            if (!(d >= 0 && d <= 1)) throw new ArgumentOutOfRangeException(nameof(Density), d, "density must lie in [0, 1] (the fraction of entries kept)");
            if (type.StartsWith("dare", StringComparison.Ordinal) && d == 0)
                throw new ArgumentOutOfRangeException(nameof(Density), d, $"density 0 with {type}: DARE divides the kept entries by the density, so it must be > 0 (PEFT would produce NaN)");
        }
    }
}
