using System.Runtime.InteropServices;

namespace Alora.Bench;

/// <summary>The peer: OpenBLAS's cblas_sgemm, loaded from libopenblas.so.0 (bench/setup.sh installs it).</summary>
internal static unsafe partial class OpenBlas
{
    private const string Library = "libopenblas.so.0";
    private const int RowMajor = 101, NoTrans = 111, Trans = 112;

    [LibraryImport(Library, EntryPoint = "cblas_sgemm")]
    private static partial void Sgemm(int order, int transA, int transB, int m, int n, int k,
        float alpha, float* a, int lda, float* b, int ldb, float beta, float* c, int ldc);

    [LibraryImport(Library, EntryPoint = "openblas_set_num_threads")]
    private static partial void SetThreadCount(int threads);

    [LibraryImport(Library, EntryPoint = "openblas_get_config")]
    private static partial nint GetConfig();

    /// <summary>True when the library loads; the message says why not otherwise.</summary>
    public static bool TryLoad(out string message)
    {
        if (NativeLibrary.TryLoad(Library, out _))
        {
            message = Marshal.PtrToStringAnsi(GetConfig()) ?? "";
            return true;
        }
        message = $"{Library} not found: run bench/setup.sh (apt-get install libopenblas-dev)";
        return false;
    }

    public static void UseThreads(int threads) => SetThreadCount(threads);

    /// <summary>y[M,K] = x[M,N]·w[N,K], the contract of Gemm.MatMulNoTranspose.</summary>
    public static void MatMulNoTranspose(float* y, float* x, float* w, int m, int n, int k)
        => Sgemm(RowMajor, NoTrans, NoTrans, m, k, n, 1f, x, n, w, k, 0f, y, k);

    /// <summary>y[N,K] = a[M,N]ᵀ·b[M,K], the contract of Gemm.MatMulTransposeA.</summary>
    public static void MatMulTransposeA(float* y, float* a, float* b, int m, int n, int k)
        => Sgemm(RowMajor, Trans, NoTrans, n, k, m, 1f, a, n, b, k, 0f, y, k);

    /// <summary>y[M,N] = x[M,K]·w[N,K]ᵀ, the same contract as Gemm.MatMul with f32 weights.</summary>
    public static void MatMul(float* y, float* x, float* w, int m, int k, int n)
        => Sgemm(RowMajor, NoTrans, Trans, m, n, k, 1f, x, k, w, k, 0f, y, n);
}
