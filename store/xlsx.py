"""Excel exports (openpyxl): one sheet per section, a styled frozen header, columns sized to their content."""
from __future__ import annotations

from io import BytesIO

from openpyxl import Workbook
from openpyxl.styles import Font, PatternFill

MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def workbook(sections: list[dict]) -> bytes:
    """Each section is {"title", "headers", "rows"}, optionally a "caption" line above the table and "footer" lines
    below it (a form's title and signature lines)."""
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
