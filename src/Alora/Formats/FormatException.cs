namespace Alora.Formats;

/// <summary>A checkpoint, config or adapter file that cannot be used as it is. The message names the file,
/// the field or tensor, what was expected and what was found.</summary>
public sealed class ModelFormatException : Exception
{
    public ModelFormatException(string message) : base(message) { }
    public ModelFormatException(string message, Exception inner) : base(message, inner) { }
    public ModelFormatException() { }
}
