using Alora.Tensors;

namespace Alora.Kernels;

/// <summary>
/// A read-only weight matrix W [rows, cols] in row-major order, as Hugging Face stores a Linear's
/// weight: rows = out features (N), cols = in features (K). Data is f32, bf16 or f16; the kernels
/// convert to f32 as they load. The memory belongs to someone else (a slab or a memory map).
/// </summary>
public readonly unsafe struct WeightMatrix
{
    public WeightMatrix(void* data, DType dtype, int rows, int cols)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(cols);
        Data = data;
        DType = dtype;
        Rows = rows;
        Cols = cols;
    }

    public void* Data { get; }
    public DType DType { get; }
    /// <summary>N: output features.</summary>
    public int Rows { get; }
    /// <summary>K: input features.</summary>
    public int Cols { get; }
    public long ByteCount => (long)Rows * Cols * DType.ByteSize();

    /// <summary>Reads element (row, col) as f32 (slow; for references and tests).</summary>
    public float this[int row, int col]
    {
        get
        {
            long i = (long)row * Cols + col;
            return DType switch
            {
                DType.F32 => ((float*)Data)[i],
                DType.BF16 => Half16.BFloat16ToSingle(((ushort*)Data)[i]),
                DType.F16 => (float)((Half*)Data)[i],
                _ => throw new InvalidOperationException($"unknown dtype {DType}"),
            };
        }
    }
}
