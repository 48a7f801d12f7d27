using Alora.Inference;

namespace Alora.Tests.Inference;

public sealed class StopStringTests
{
    [Fact]
    public void HoldsBackAPossibleStopAndCutsAtAMatch()
    {
        var m = new StopStringMatcher(["\nQ:", "END"]);
        Assert.Equal(("Hello", false), m.Push("Hello"));
        Assert.Equal((" world", false), m.Push(" world\n"));   // "\n" could start "\nQ:"
        Assert.Equal(("\nok", false), m.Push("ok"));           // it did not
        Assert.Equal(("", false), m.Push("E"));
        Assert.Equal(("", false), m.Push("N"));
        Assert.Equal(("EN ", true), m.Push(" END"));   // "EN" was held back, then turned out to be text
        Assert.True(m.Stopped);
    }

    [Fact]
    public void FinishReleasesHeldText()
    {
        var m = new StopStringMatcher(["STOP"]);
        Assert.Equal(("ab", false), m.Push("abST"));
        Assert.Equal("STx", m.Finish("x"));
    }
}
