namespace Alora.Tests.Training;

/// <summary>Central finite differences in double, and a comparison that prints the worst element.</summary>
internal static class GradientCheck
{
    /// <summary>d f / d x[i] for every i by central differences of step h (x is restored).</summary>
    public static double[] Numeric(double[] x, Func<double[], double> f, double h = 1e-5)
    {
        var gradient = new double[x.Length];
        for (int i = 0; i < x.Length; i++)
        {
            double saved = x[i];
            x[i] = saved + h;
            double plus = f(x);
            x[i] = saved - h;
            double minus = f(x);
            x[i] = saved;
            gradient[i] = (plus - minus) / (2 * h);
        }
        return gradient;
    }

    /// <summary>Fails unless |actual − expected| ≤ absolute + relative·max|expected| for every element.</summary>
    public static void AssertClose(ReadOnlySpan<double> expected, ReadOnlySpan<float> actual, double relative, double absolute, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double maxExpected = 0, worst = 0;
        int worstIndex = -1;
        for (int i = 0; i < expected.Length; i++) maxExpected = Math.Max(maxExpected, Math.Abs(expected[i]));
        for (int i = 0; i < expected.Length; i++)
        {
            double diff = Math.Abs(actual[i] - expected[i]);
            if (double.IsNaN(actual[i]) || diff > worst) { worst = double.IsNaN(actual[i]) ? double.PositiveInfinity : diff; worstIndex = i; }
        }
        double allowed = absolute + relative * maxExpected;
        Assert.True(worst <= allowed, $"{what}: element {worstIndex} expected {(worstIndex >= 0 ? expected[worstIndex] : 0):R} got {(worstIndex >= 0 ? actual[worstIndex] : 0):R}; max |diff| {worst:E3} > allowed {allowed:E3} (max |expected| {maxExpected:E3})");
    }

    public static void AssertClose(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, double relative, double absolute, string what)
    {
        var e = new double[expected.Length];
        for (int i = 0; i < e.Length; i++) e[i] = expected[i];
        AssertClose(e, actual, relative, absolute, what);
    }

    public static double[] RandomDoubles(int n, int seed, double scale = 1)
    {
        var random = new Random(seed);
        var values = new double[n];
        for (int i = 0; i < n; i++) values[i] = (random.NextDouble() * 2 - 1) * scale;
        return values;
    }

    public static float[] ToFloats(double[] x) => x.Select(v => (float)v).ToArray();
    public static double[] ToDoubles(float[] x) => x.Select(v => (double)v).ToArray();
}
