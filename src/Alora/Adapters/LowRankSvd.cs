using System.Numerics;

namespace Alora.Adapters;

// Legend: out/in = the delta's rows/columns, R = the inner rank of the product, k = the rank to keep.
// Matrices are row-major double arrays unless a name says otherwise.

/// <summary>
/// Truncated SVD of a low-rank product ΔW = Bc·Ac in f64, without forming ΔW when R is small: thin Householder QR
/// of Bc and Acᵀ, then a one-sided Jacobi SVD of the R×R core Rb·Raᵀ. When R ≥ min(out, in) the product is formed
/// and Jacobi runs on it directly (it is then at most R columns wide).
/// </summary>
public static class LowRankSvd
{
    private const int MaxSweeps = 80;

    /// <summary>B' [out, k], A' [k, in] with B'·A' the best rank-k approximation of Bc·Ac (A' rows orthonormal, B' columns by descending norm).</summary>
    public static (double[] B, double[] A) Truncate(double[] bc, double[] ac, int outFeatures, int inFeatures, int innerRank, int keepRank)
    {
        ArgumentNullException.ThrowIfNull(bc);
        ArgumentNullException.ThrowIfNull(ac);
        if (bc.Length != (long)outFeatures * innerRank || ac.Length != (long)innerRank * inFeatures)
            throw new ArgumentException($"Bc must be [{outFeatures}, {innerRank}] and Ac [{innerRank}, {inFeatures}]");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(keepRank);
        var b = new double[(long)outFeatures * keepRank];
        var a = new double[(long)keepRank * inFeatures];

        if (innerRank < Math.Min(outFeatures, inFeatures))
        {
            var (qb, rb) = ThinQr(bc, outFeatures, innerRank);                      // [out, R], [R, R]
            var (qa, ra) = ThinQr(Transpose(ac, innerRank, inFeatures), inFeatures, innerRank);   // [in, R], [R, R]
            var core = Multiply(rb, Transpose(ra, innerRank, innerRank), innerRank, innerRank, innerRank);   // [R, R]
            var (scaledLeft, right, order) = Jacobi(core, innerRank, innerRank);    // columns σ_j·u_j, v_j
            for (int j = 0; j < Math.Min(keepRank, innerRank); j++)
            {
                int c = order[j];
                for (int o = 0; o < outFeatures; o++)
                {
                    double sum = 0;
                    for (int t = 0; t < innerRank; t++) sum += qb[(long)o * innerRank + t] * scaledLeft[c][t];
                    b[(long)o * keepRank + j] = sum;
                }
                for (int i = 0; i < inFeatures; i++)
                {
                    double sum = 0;
                    for (int t = 0; t < innerRank; t++) sum += qa[(long)i * innerRank + t] * right[c][t];
                    a[(long)j * inFeatures + i] = sum;
                }
            }
            return (b, a);
        }

        var delta = Multiply(bc, ac, outFeatures, innerRank, inFeatures);   // [out, in]
        SvdOfProduct(delta, outFeatures, inFeatures, keepRank, b, a);
        return (b, a);
    }

    /// <summary>B' [out, k], A' [k, in]: the best rank-k approximation of a dense ΔW [out, in] (Jacobi on it directly).</summary>
    public static (double[] B, double[] A) TruncateDense(double[] delta, int outFeatures, int inFeatures, int keepRank)
    {
        ArgumentNullException.ThrowIfNull(delta);
        if (delta.Length != (long)outFeatures * inFeatures) throw new ArgumentException($"ΔW must be [{outFeatures}, {inFeatures}]");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(keepRank);
        var b = new double[(long)outFeatures * keepRank];
        var a = new double[(long)keepRank * inFeatures];
        SvdOfProduct(delta, outFeatures, inFeatures, keepRank, b, a);
        return (b, a);
    }

    /// <summary>
    /// Fixes the sign of each singular pair (column j of B', row j of A'), which an SVD leaves free: the entry of
    /// largest |·| of A's row j (the first such) is made positive. B'·A' does not change; clamping (svd_clamp) does depend on it.
    /// </summary>
    public static void NormalizeSigns(double[] b, double[] a, int outFeatures, int inFeatures, int rank)
    {
        for (int j = 0; j < rank; j++)
        {
            int best = 0;
            for (int i = 1; i < inFeatures; i++)
                if (Math.Abs(a[(long)j * inFeatures + i]) > Math.Abs(a[(long)j * inFeatures + best])) best = i;
            if (a[(long)j * inFeatures + best] >= 0) continue;
            for (int i = 0; i < inFeatures; i++) a[(long)j * inFeatures + i] = -a[(long)j * inFeatures + i];
            for (int o = 0; o < outFeatures; o++) b[(long)o * rank + j] = -b[(long)o * rank + j];
        }
    }

    private static void SvdOfProduct(double[] delta, int outFeatures, int inFeatures, int keepRank, double[] b, double[] a)
    {
        if (outFeatures >= inFeatures)
        {
            var (scaledLeft, right, order) = Jacobi(delta, outFeatures, inFeatures);
            for (int j = 0; j < Math.Min(keepRank, inFeatures); j++)
            {
                int c = order[j];
                for (int o = 0; o < outFeatures; o++) b[(long)o * keepRank + j] = scaledLeft[c][o];
                for (int i = 0; i < inFeatures; i++) a[(long)j * inFeatures + i] = right[c][i];
            }
        }
        else
        {
            // ΔWᵀ = V·S·Uᵀ: Jacobi's scaled left vectors are σ_j·v_j, its right vectors are u_j.
            var (scaledRight, left, order) = Jacobi(Transpose(delta, outFeatures, inFeatures), inFeatures, outFeatures);
            for (int j = 0; j < Math.Min(keepRank, outFeatures); j++)
            {
                int c = order[j];
                double sigma = Norm(scaledRight[c]);
                for (int o = 0; o < outFeatures; o++) b[(long)o * keepRank + j] = left[c][o] * sigma;
                for (int i = 0; i < inFeatures; i++) a[(long)j * inFeatures + i] = sigma == 0 ? 0 : scaledRight[c][i] / sigma;
            }
        }
    }

    /// <summary>
    /// One-sided (Hestenes) Jacobi on M [m, n], m ≥ n: rotates column pairs until all are orthogonal. Returns the
    /// columns of M·V (σ_j·u_j), the columns of V, and the column order by descending σ.
    /// </summary>
    internal static (double[][] ScaledLeft, double[][] Right, int[] Order) Jacobi(double[] m, int rows, int cols)
    {
        var u = new double[cols][];
        var v = new double[cols][];
        for (int j = 0; j < cols; j++)
        {
            u[j] = new double[rows];
            for (int i = 0; i < rows; i++) u[j][i] = m[(long)i * cols + j];
            v[j] = new double[cols];
            v[j][j] = 1;
        }
        for (int sweep = 0; sweep < MaxSweeps; sweep++)
        {
            bool rotated = false;
            for (int p = 0; p < cols - 1; p++)
                for (int q = p + 1; q < cols; q++)
                {
                    double alpha = Dot(u[p], u[p]), beta = Dot(u[q], u[q]), gamma = Dot(u[p], u[q]);
                    if (gamma == 0 || Math.Abs(gamma) <= 1e-15 * Math.Sqrt(alpha * beta)) continue;
                    rotated = true;
                    double zeta = (beta - alpha) / (2 * gamma);
                    double t = Math.Sign(zeta == 0 ? 1 : zeta) / (Math.Abs(zeta) + Math.Sqrt(1 + zeta * zeta));
                    double c = 1 / Math.Sqrt(1 + t * t), s = c * t;
                    Rotate(u[p], u[q], c, s);
                    Rotate(v[p], v[q], c, s);
                }
            if (!rotated) break;
        }
        var norms = u.Select(Norm).ToArray();
        var order = Enumerable.Range(0, cols).OrderByDescending(j => norms[j]).ToArray();
        return (u, v, order);
    }

    private static void Rotate(double[] x, double[] y, double c, double s)
    {
        // Vectorized: Jacobi's time is these rotations and the dots (PiSSA runs it on whole projections).
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var cv = new Vector<double>(c);
            var sv = new Vector<double>(s);
            for (; i <= x.Length - Vector<double>.Count; i += Vector<double>.Count)
            {
                var xi = new Vector<double>(x, i);
                var yi = new Vector<double>(y, i);
                (cv * xi - sv * yi).CopyTo(x, i);
                (sv * xi + cv * yi).CopyTo(y, i);
            }
        }
        for (; i < x.Length; i++)
        {
            double xi = x[i], yi = y[i];
            x[i] = c * xi - s * yi;
            y[i] = s * xi + c * yi;
        }
    }

    /// <summary>Thin Householder QR of M [m, n], m ≥ n: Q [m, n] with orthonormal columns (even when M is rank-deficient) and R [n, n].</summary>
    internal static (double[] Q, double[] R) ThinQr(double[] m, int rows, int cols)
    {
        var work = (double[])m.Clone();   // [rows, cols], becomes R in its top rows
        var reflectors = new double[cols][];
        for (int k = 0; k < cols; k++)
        {
            var x = new double[rows - k];
            for (int i = k; i < rows; i++) x[i - k] = work[(long)i * cols + k];
            double norm = Norm(x);
            if (norm != 0)
            {
                x[0] += x[0] >= 0 ? norm : -norm;
                double vNorm = Norm(x);
                for (int i = 0; i < x.Length; i++) x[i] /= vNorm;
            }
            reflectors[k] = x;   // H_k = I − 2·x·xᵀ on rows k..; x = 0 means H_k = I
            for (int j = k; j < cols; j++)
            {
                double dot = 0;
                for (int i = k; i < rows; i++) dot += x[i - k] * work[(long)i * cols + j];
                for (int i = k; i < rows; i++) work[(long)i * cols + j] -= 2 * dot * x[i - k];
            }
        }
        var r = new double[(long)cols * cols];
        for (int i = 0; i < cols; i++)
            for (int j = i; j < cols; j++) r[(long)i * cols + j] = work[(long)i * cols + j];
        // Q = H_0·H_1·…·H_{n−1} applied to the first n columns of the identity.
        var q = new double[(long)rows * cols];
        for (int j = 0; j < cols; j++) q[(long)j * cols + j] = 1;
        for (int k = cols - 1; k >= 0; k--)
        {
            var x = reflectors[k];
            for (int j = 0; j < cols; j++)
            {
                double dot = 0;
                for (int i = k; i < rows; i++) dot += x[i - k] * q[(long)i * cols + j];
                for (int i = k; i < rows; i++) q[(long)i * cols + j] -= 2 * dot * x[i - k];
            }
        }
        return (q, r);
    }

    internal static double[] Multiply(double[] left, double[] right, int rows, int inner, int cols)
    {
        var result = new double[(long)rows * cols];
        for (int i = 0; i < rows; i++)
            for (int t = 0; t < inner; t++)
            {
                double l = left[(long)i * inner + t];
                if (l == 0) continue;
                for (int j = 0; j < cols; j++) result[(long)i * cols + j] += l * right[(long)t * cols + j];
            }
        return result;
    }

    internal static double[] Transpose(double[] m, int rows, int cols)
    {
        var result = new double[m.Length];
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++) result[(long)j * rows + i] = m[(long)i * cols + j];
        return result;
    }

    private static double Dot(double[] x, double[] y)
    {
        int i = 0;
        double sum = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var acc = Vector<double>.Zero;
            for (; i <= x.Length - Vector<double>.Count; i += Vector<double>.Count)
                acc += new Vector<double>(x, i) * new Vector<double>(y, i);
            sum = Vector.Sum(acc);
        }
        for (; i < x.Length; i++) sum += x[i] * y[i];
        return sum;
    }

    private static double Norm(double[] x) => Math.Sqrt(Dot(x, x));
}
