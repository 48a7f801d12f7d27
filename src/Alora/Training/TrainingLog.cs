using System.Globalization;
using System.Text;
using Alora.Formats;

namespace Alora.Training;

/// <summary>The loss curve of a run: loss_curve.csv (step, epoch, loss, learning_rate, val_loss) and loss_curve.svg.</summary>
public sealed class TrainingLog
{
    private readonly List<(long Step, int Epoch, double Loss, double LearningRate, double? ValidationLoss)> _rows = [];

    public IReadOnlyList<(long Step, int Epoch, double Loss, double LearningRate, double? ValidationLoss)> Rows => _rows;

    public void Add(long step, int epoch, double loss, double learningRate, double? validationLoss) => _rows.Add((step, epoch, loss, learningRate, validationLoss));

    public void Restore(IEnumerable<(long, int, double, double, double?)> rows) => _rows.AddRange(rows);

    public void Write(string folder)
    {
        var csv = new StringBuilder("step,epoch,loss,learning_rate,val_loss\n");
        foreach (var r in _rows)
            csv.Append(CultureInfo.InvariantCulture, $"{r.Step},{r.Epoch},{r.Loss:R},{r.LearningRate:R},{(r.ValidationLoss is double v ? v.ToString("R", CultureInfo.InvariantCulture) : "")}\n");
        AtomicFile.WriteAllText(Path.Combine(folder, "loss_curve.csv"), csv.ToString());
        AtomicFile.WriteAllText(Path.Combine(folder, "loss_curve.svg"), Svg());
    }

    public static List<(long, int, double, double, double?)> ReadCsv(string path)
    {
        var rows = new List<(long, int, double, double, double?)>();
        foreach (var line in File.ReadLines(path).Skip(1))
        {
            var f = line.Split(',');
            if (f.Length < 5) continue;
            rows.Add((long.Parse(f[0], CultureInfo.InvariantCulture), int.Parse(f[1], CultureInfo.InvariantCulture),
                double.Parse(f[2], CultureInfo.InvariantCulture), double.Parse(f[3], CultureInfo.InvariantCulture),
                f[4].Length == 0 ? null : double.Parse(f[4], CultureInfo.InvariantCulture)));
        }
        return rows;
    }

    private string Svg()
    {
        const int width = 640, height = 360, left = 60, right = 20, top = 30, bottom = 45;
        var svg = new StringBuilder();
        svg.Append(CultureInfo.InvariantCulture, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"{width}\" height=\"{height}\" fill=\"white\"/>\n");
        svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{width / 2}\" y=\"18\" text-anchor=\"middle\" font-size=\"14\">Training loss</text>\n");
        if (_rows.Count > 0)
        {
            var values = _rows.Select(r => r.Loss).Concat(_rows.Where(r => r.ValidationLoss.HasValue).Select(r => r.ValidationLoss!.Value)).ToList();
            double minY = values.Min(), maxY = values.Max();
            if (maxY - minY < 1e-9) { minY -= 0.5; maxY += 0.5; }
            long minX = _rows.Min(r => r.Step), maxX = Math.Max(minX + 1, _rows.Max(r => r.Step));
            string X(long step) => (left + (double)(step - minX) / (maxX - minX) * (width - left - right)).ToString("F1", CultureInfo.InvariantCulture);
            string Y(double value) => (top + (maxY - value) / (maxY - minY) * (height - top - bottom)).ToString("F1", CultureInfo.InvariantCulture);
            svg.Append(CultureInfo.InvariantCulture, $"<line x1=\"{left}\" y1=\"{height - bottom}\" x2=\"{width - right}\" y2=\"{height - bottom}\" stroke=\"black\"/><line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{height - bottom}\" stroke=\"black\"/>\n");
            for (int i = 0; i <= 4; i++)
            {
                double v = minY + (maxY - minY) * i / 4;
                svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{left - 5}\" y=\"{Y(v)}\" text-anchor=\"end\" dy=\"4\">{v:F3}</text>\n");
            }
            svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{left}\" y=\"{height - bottom + 16}\" text-anchor=\"middle\">{minX}</text><text x=\"{width - right}\" y=\"{height - bottom + 16}\" text-anchor=\"middle\">{maxX}</text>\n");
            svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{(left + width - right) / 2}\" y=\"{height - 8}\" text-anchor=\"middle\">optimizer step</text>\n");
            svg.Append("<polyline fill=\"none\" stroke=\"#2471a3\" stroke-width=\"1.5\" points=\"");
            foreach (var r in _rows) svg.Append(X(r.Step)).Append(',').Append(Y(r.Loss)).Append(' ');
            svg.Append("\"/>\n");
            var validation = _rows.Where(r => r.ValidationLoss.HasValue).ToList();
            if (validation.Count > 0)
            {
                svg.Append("<polyline fill=\"none\" stroke=\"#c0392b\" stroke-width=\"1.5\" points=\"");
                foreach (var r in validation) svg.Append(X(r.Step)).Append(',').Append(Y(r.ValidationLoss!.Value)).Append(' ');
                svg.Append("\"/>\n");
                svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{width - right - 5}\" y=\"{top + 28}\" text-anchor=\"end\" fill=\"#c0392b\">validation loss</text>\n");
            }
            svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{width - right - 5}\" y=\"{top + 12}\" text-anchor=\"end\" fill=\"#2471a3\">training loss</text>\n");
        }
        svg.Append("</svg>\n");
        return svg.ToString();
    }
}
