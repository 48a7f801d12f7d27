using System.Runtime.InteropServices;
using Alora.Formats;
using Alora.Tensors;

namespace Alora.Tests.Quantization;

/// <summary>
/// llama.cpp's own quantizers and dequantizers (ggml-base from LLamaSharp.Backend.Cpu 0.30.0, the build that
/// LLamaSharp 0.30.0 runs), called directly: the reference the quantized kernels and Alora's quantizers are held to.
/// Test-only; the library never loads native code.
/// </summary>
internal static unsafe class GgmlReference
{
    private static readonly Lazy<nint> Library = new(Load);

    /// <summary>The generic (no AVX) build: its dequantize_row_* is plain C without fused multiply-adds, as the others.</summary>
    public static string LibraryPath => Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "noavx", "libggml-base.so");

    private static nint Load()
    {
        if (!File.Exists(LibraryPath))
            throw new FileNotFoundException($"llama.cpp's ggml-base was not found at {LibraryPath} (LLamaSharp.Backend.Cpu restores it on linux-x64)", LibraryPath);
        return NativeLibrary.Load(LibraryPath);
    }

    private static nint Export(string name) => NativeLibrary.GetExport(Library.Value, name);

    /// <summary>ggml's row dequantizer of a type: dequantize_row_q4_K etc.</summary>
    public static void Dequantize(DType dtype, byte[] blocks, float[] values)
    {
        var f = (delegate* unmanaged<byte*, float*, long, void>)Export("dequantize_row_" + Suffix(dtype));
        fixed (byte* b = blocks)
        fixed (float* v = values) f(b, v, values.Length);
    }

    /// <summary>llama.cpp's quantizer as `llama-quantize` runs it without an importance matrix (ggml_quantize_chunk).</summary>
    public static byte[] Quantize(DType dtype, float[] values, int rowLength)
    {
        var bytes = new byte[dtype.ByteCount(values.Length)];
        fixed (float* v = values)
        fixed (byte* b = bytes)
        {
            if (dtype == DType.Q8_K)
            {
                // Not a file type: ggml_quantize_chunk refuses it; its reference quantizer is what llama.cpp's CPU backend runs.
                var f = (delegate* unmanaged<float*, byte*, long, void>)Export("quantize_row_q8_K_ref");
                f(v, b, values.Length);
            }
            else
            {
                var f = (delegate* unmanaged<int, float*, byte*, long, long, long, float*, nuint>)Export("ggml_quantize_chunk");
                nuint written = f((int)GgufFile.ToGgmlType(dtype), v, b, 0, values.Length / rowLength, rowLength, null);
                Assert.Equal((nuint)bytes.Length, written);
            }
        }
        return bytes;
    }

    private static string Suffix(DType dtype) => dtype switch
    {
        DType.Q4_K or DType.Q5_K or DType.Q6_K or DType.Q8_K => dtype.ToString().ToLowerInvariant().Replace("_k", "_K"),
        _ => dtype.ToString().ToLowerInvariant(),
    };
}
