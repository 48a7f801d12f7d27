using Alora.Tensors;

namespace Alora.Kernels;

// Legend: M = rows, V = vocab, D = hidden.

/// <summary>Embedding lookup: y[i] = table[ids[i]] converted to f32.</summary>
public static unsafe class Embedding
{
    public static void Lookup(float* y, in WeightMatrix table, int* ids, int m) => LookupReference(y, table, ids, m);

    public static void LookupReference(float* y, in WeightMatrix table, int* ids, int m)
    {
        int d = table.Cols;
        for (int i = 0; i < m; i++)
        {
            int id = ids[i];
            if ((uint)id >= (uint)table.Rows)
                throw new ArgumentOutOfRangeException(nameof(ids), $"token id {id} at row {i} is outside the embedding table [0, {table.Rows})");
            byte* row = (byte*)table.Data + (long)id * d * table.DType.ByteSize();
            Convert.ToSingle(y + (long)i * d, row, table.DType, d);
        }
    }
}
