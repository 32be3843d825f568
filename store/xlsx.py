"""Excel exports (openpyxl): one sheet per section, a styled frozen header, columns sized to their content."""
from __future__ import annotations

import csv
import io
from io import BytesIO
from zipfile import BadZipFile


MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def workbook(sections: list[dict]) -> bytes:
    """Each section is {"title", "headers", "rows"}, optionally a "caption" line above the table and "footer" lines
    below it (a form's title and signature lines)."""
    from openpyxl import Workbook  # noqa: PLC0415 - ~0.7 s to import: on first use, not when a server starts
    from openpyxl.styles import Font, PatternFill  # noqa: PLC0415
    book = Workbook()
    book.remove(book.active)
    header = Font(bold=True, color="FFFFFF")
    fill = PatternFill("solid", fgColor="1F4E79")
    for section in sections:
        sheet = book.create_sheet(section["title"])
        if section.get("caption"):
            sheet.append([section["caption"]])
            sheet.cell(1, 1).font = Font(bold=True, size=14)
        sheet.append(section["headers"])
        first = sheet.max_row
        for cell in sheet[first]:
            cell.font, cell.fill = header, fill
        for row in section["rows"]:
            sheet.append(row)
        last = sheet.max_row
        for line in section.get("footer", []):
            sheet.append(line)
        sheet.freeze_panes = f"A{first + 1}"
        for column in sheet.iter_cols(min_row=first, max_row=last):
            width = max(len(str(c.value or "")) for c in column)
            sheet.column_dimensions[column[0].column_letter].width = min(60, 4 + width * 2)
    out = BytesIO()
    book.save(out)
    return out.getvalue()


class TableError(ValueError):
    """An uploaded table that cannot be read at all (its message is for the admin)."""


def read_rows(data: bytes, filename: str, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """The rows of an uploaded .xlsx (first sheet) or UTF-8 CSV as (line, {column: text}), line 1 being the header,
    which must start with `columns` (further columns are ignored); blank rows are skipped."""
    if filename.lower().endswith(".xlsx"):
        try:
            from openpyxl import load_workbook  # noqa: PLC0415
            sheet = load_workbook(BytesIO(data), read_only=True, data_only=True).worksheets[0]
        except (BadZipFile, OSError, KeyError, ValueError):
            raise TableError("无法读取 .xlsx 文件 (文件损坏或不是 Excel 工作簿)") from None
        table = [["" if v is None else str(v).strip() for v in row] for row in sheet.iter_rows(values_only=True)]
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise TableError("CSV 须为 UTF-8 编码 (可在 Excel/WPS 中另存为 “CSV UTF-8”)") from None
        try:
            table = [[v.strip() for v in row] for row in csv.reader(io.StringIO(text, newline=""))]
        except csv.Error as exc:
            raise TableError(f"无法读取 CSV: {exc}") from None
    if not table or tuple(table[0][:len(columns)]) != columns:
        raise TableError(f"第 1 行表头须为 {','.join(columns)}")
    return [(line, dict(zip(columns, row + [""] * len(columns))))
            for line, row in enumerate(table[1:], start=2) if any(row)]
