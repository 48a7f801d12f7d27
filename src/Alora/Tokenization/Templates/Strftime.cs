using System.Globalization;
using System.Text;

namespace Alora.Tokenization.Templates;

/// <summary>Python's <c>datetime.now().strftime(format)</c> on Linux (C locale) for transformers'
/// <c>strftime_now</c>. The clock is naive local time, so %z and %Z are empty. glibc's <c>%-d</c> style
/// (no padding) is supported because templates use it.</summary>
internal static class Strftime
{
    private static readonly string[] DayNames = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
    private static readonly string[] MonthNames =
        ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];

    public static string Format(DateTimeOffset now, string format)
    {
        var time = now.DateTime;
        var sb = new StringBuilder();
        for (int i = 0; i < format.Length; i++)
        {
            char c = format[i];
            if (c != '%' || i + 1 >= format.Length)
            {
                sb.Append(c);
                continue;
            }
            char code = format[++i];
            bool noPadding = false;
            if (code == '-' && i + 1 < format.Length)
            {
                noPadding = true;
                code = format[++i];
            }
            sb.Append(Field(time, code, noPadding));
        }
        return sb.ToString();
    }

    private static string Number(int value, int width, bool noPadding)
        => noPadding ? value.ToString(CultureInfo.InvariantCulture) : value.ToString(new string('0', width), CultureInfo.InvariantCulture);

    private static string Field(DateTime t, char code, bool noPadding)
    {
        int weekday = (int)t.DayOfWeek;  // Sunday = 0
        int yearDay = t.DayOfYear - 1;   // 0-based
        int hour12 = t.Hour % 12 == 0 ? 12 : t.Hour % 12;
        return code switch
        {
            'a' => DayNames[weekday][..3],
            'A' => DayNames[weekday],
            'b' or 'h' => MonthNames[t.Month - 1][..3],
            'B' => MonthNames[t.Month - 1],
            'c' => $"{DayNames[weekday][..3]} {MonthNames[t.Month - 1][..3]} {t.Day,2} {t:HH:mm:ss} {t.Year}",
            'd' => Number(t.Day, 2, noPadding),
            'e' => noPadding ? t.Day.ToString(CultureInfo.InvariantCulture) : t.Day.ToString(CultureInfo.InvariantCulture).PadLeft(2),
            'D' or 'x' => $"{t.Month:00}/{t.Day:00}/{t.Year % 100:00}",
            'F' => $"{t.Year:0000}-{t.Month:00}-{t.Day:00}",
            'f' => (t.Ticks % TimeSpan.TicksPerSecond / 10).ToString("000000", CultureInfo.InvariantCulture),
            'H' => Number(t.Hour, 2, noPadding),
            'I' => Number(hour12, 2, noPadding),
            'j' => Number(yearDay + 1, 3, noPadding),
            'k' => t.Hour.ToString(CultureInfo.InvariantCulture).PadLeft(2),
            'l' => hour12.ToString(CultureInfo.InvariantCulture).PadLeft(2),
            'm' => Number(t.Month, 2, noPadding),
            'M' => Number(t.Minute, 2, noPadding),
            'n' => "\n",
            'p' => t.Hour < 12 ? "AM" : "PM",
            'r' => $"{hour12:00}:{t.Minute:00}:{t.Second:00} {(t.Hour < 12 ? "AM" : "PM")}",
            'R' => $"{t.Hour:00}:{t.Minute:00}",
            'S' => Number(t.Second, 2, noPadding),
            't' => "\t",
            'T' or 'X' => $"{t.Hour:00}:{t.Minute:00}:{t.Second:00}",
            'u' => (weekday == 0 ? 7 : weekday).ToString(CultureInfo.InvariantCulture),
            'U' => Number((yearDay + 7 - weekday) / 7, 2, noPadding),
            'w' => weekday.ToString(CultureInfo.InvariantCulture),
            'W' => Number((yearDay + 7 - (weekday + 6) % 7) / 7, 2, noPadding),
            'V' => Number(ISOWeek.GetWeekOfYear(t), 2, noPadding),
            'G' => ISOWeek.GetYear(t).ToString(CultureInfo.InvariantCulture),
            'y' => Number(t.Year % 100, 2, noPadding),
            'Y' => t.Year.ToString(CultureInfo.InvariantCulture),
            'C' => Number(t.Year / 100, 2, noPadding),
            'z' or 'Z' => "",
            '%' => "%",
            _ => "%" + code,
        };
    }
}
