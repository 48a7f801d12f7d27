using Alora.Tensors;

namespace Alora.Kernels;

/// <summary>
/// A read-only weight matrix W [rows, cols] in row-major order, as Hugging Face stores a Linear's
/// weight: rows = out features (N), cols = in features (K). Data is f32, bf16, f16 or one of ggml's block
/// quantizations (each row a whole number of blocks); the kernels convert to f32 as they load. The memory belongs to someone else (a slab or a memory map).
/// </summary>
public readonly unsafe struct WeightMatrix
{
    public WeightMatrix(void* data, DType dtype, int rows, int cols)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(cols);
        if (cols % dtype.BlockLength() != 0)
            throw new ArgumentException($"a {dtype} matrix's rows hold whole blocks of {dtype.BlockLength()} elements; {cols} columns is not a multiple of {dtype.BlockLength()}", nameof(cols));
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
    public long ByteCount => Rows * DType.RowBytes(Cols);
    /// <summary>Bytes of one row.</summary>
    public long RowBytes => DType.RowBytes(Cols);

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
                DType.Q8_0 => Q8_0Load.Scalar(Data, i),
                DType.Q4_0 => Q4_0Load.Scalar(Data, i),
                DType.Q4_1 => Q4_1Load.Scalar(Data, i),
                DType.Q5_0 => Q5_0Load.Scalar(Data, i),
                DType.Q5_1 => Q5_1Load.Scalar(Data, i),
                DType.Q4_K => Q4_KLoad.Scalar(Data, i),
                DType.Q5_K => Q5_KLoad.Scalar(Data, i),
                DType.Q6_K => Q6_KLoad.Scalar(Data, i),
                DType.Q8_K => Q8_KLoad.Scalar(Data, i),
                _ => throw new InvalidOperationException($"unknown dtype {DType}"),
            };
        }
    }
}
