namespace Alora.Tensors;

/// <summary>Element types a weight can be stored in. Arithmetic is always f32.</summary>
public enum DType
{
    F32,
    BF16,
    F16,
}

public static class DTypeExtensions
{
    public static int ByteSize(this DType dtype) => dtype switch
    {
        DType.F32 => 4,
        DType.BF16 => 2,
        DType.F16 => 2,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
    };
}
