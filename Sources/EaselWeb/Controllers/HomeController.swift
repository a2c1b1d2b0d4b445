import Hummingbird

/// The first page a person sees.
struct HomeController {
    let views: ViewRenderer

    func addRoutes(to router: Router<AppRequestContext>) {
        router.get("/", use: self.home)
    }

    struct HomePage: Sendable {
        var layout: LayoutData
        var siteName: String
    }

    @Sendable func home(_ request: Request, context: AppRequestContext) throws -> Response {
        let page = HomePage(layout: self.views.layout(title: self.views.siteName, context: context), siteName: self.views.siteName)
        return try self.views.render(page, template: "home")
    }
}
