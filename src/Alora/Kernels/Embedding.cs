using Alora.Tensors;

namespace Alora.Kernels;

// Legend: M = rows (tokens), V = vocabulary size, D = hidden size.

/// <summary>Embedding lookup: y[i] = table[ids[i]] converted to f32.</summary>
public static unsafe class Embedding
{
    /// <summary>y[M,D] = table[V,D][ids[M]] as f32; every id is checked against V first.</summary>
    public static void Lookup(float* y, in WeightMatrix table, int* ids, int m)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(m);
        CheckIds(table, ids, m);
        int d = table.Cols;
        long rowBytes = table.RowBytes;
        for (int i = 0; i < m; i++)
            Convert.ToSingle(y + (long)i * d, (byte*)table.Data + ids[i] * rowBytes, table.DType, d);
    }

    /// <summary>Scalar reference twin of <see cref="Lookup"/>.</summary>
    public static void LookupReference(float* y, in WeightMatrix table, int* ids, int m)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(m);
        CheckIds(table, ids, m);
        int d = table.Cols;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < d; j++) y[(long)i * d + j] = table[ids[i], j];
    }

    // Checked before anything is written, so a bad id leaves y untouched.
    private static void CheckIds(in WeightMatrix table, int* ids, int m)
    {
        for (int i = 0; i < m; i++)
        {
            int id = ids[i];
            if ((uint)id >= (uint)table.Rows)
                throw new ArgumentOutOfRangeException(nameof(ids), id,
                    $"token id {id} at row {i} is outside the embedding table's {table.Rows} rows [0, {table.Rows})");
        }
    }
}
